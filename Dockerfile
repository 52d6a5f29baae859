# syntax=docker/dockerfile:1.7
# The promptalias image: the operator (`promptalias operator`) and the injected sidecar
# (`promptalias sidecar`) run from the same image, as the Helm chart expects.
#
#   docker build -t ghcr.io/promptalias/promptalias:0.1.0 .
#
# Two stages: the build stage turns this checkout into a wheel and installs it (with its
# dependencies) into a virtualenv; the runtime stage copies only that virtualenv onto the same slim
# base, so no compiler, pip cache or source tree ships. Both stages must use the same base image:
# the virtualenv's python is a symlink to the base image's interpreter.
# Pin by digest in release builds (e.g. --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore): a change to tests or docs keeps the cache.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/promptalias \
 && /opt/promptalias/bin/pip install /dist/promptalias-*.whl \
 && /opt/promptalias/bin/pip check \
 && /opt/promptalias/bin/promptalias --help >/dev/null \
 && /opt/promptalias/bin/python -c "import promptalias.client"

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="promptalias" \
      org.opencontainers.image.description="Kubernetes operator that makes MLflow prompt aliases declarative" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/promptalias/promptalias"
COPY --from=build /opt/promptalias /opt/promptalias
# HOME on /tmp: the chart mounts an emptyDir there and keeps the root filesystem read-only.
ENV PATH=/opt/promptalias/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# A numeric non-root user (the chart's runAsUser), so runAsNonRoot can be verified without /etc/passwd.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9090 9443
ENTRYPOINT ["promptalias"]
CMD ["operator", "--all-namespaces"]
