"""The promptalias sidecar: ConfigMap projections → atomic files + localhost HTTP (see `main`)."""
