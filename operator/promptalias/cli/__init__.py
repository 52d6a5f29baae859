"""The `promptalias` command (also installed as the kubectl plugin `kubectl-promptalias`)."""
