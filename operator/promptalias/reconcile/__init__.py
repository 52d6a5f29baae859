"""Pure decision logic: desired vs observed -> what to write, and the status that results.

Nothing here performs I/O; the handlers gather observations, call these functions, and carry out
the plan. Every branch is unit-tested without a cluster or an MLflow server.
"""
