"""Benchmarks (`make bench`): each compares promptalias with the stock MLflow path in the same run."""
