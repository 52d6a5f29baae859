"""promptalias: declarative MLflow prompt aliases on Kubernetes."""

__version__ = "0.1.0"
