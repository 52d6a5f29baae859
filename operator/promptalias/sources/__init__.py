"""Clients of the metric sources an experiment's analysis reads (MLflow feedback is in registry/)."""
