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
# Dependencies first, in their own layer, so a code change does not reinstall them. `python3 -m venv`
# + the venv's own pip work on the official python image and on a plain Debian base with
# python3-venv (the testbed's daemonless buildah build, docs/node.md), which has no system pip.
# uv (from PyPI, removed again below) installs MLflow's dependency tree in seconds where pip takes
# minutes; both resolve the same requirements from the same index. --system-certs: the image's CA
# store, which a build behind a TLS-intercepting proxy mounts over with the host's (docs/node.md).
RUN python3 -m venv /opt/promptalias \
 && python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      > /tmp/requirements.txt \
 && /opt/promptalias/bin/pip install "uv>=0.13,<1" \
 && /opt/promptalias/bin/uv pip install --system-certs --no-cache --python /opt/promptalias/bin/python \
      -r /tmp/requirements.txt \
 && /opt/promptalias/bin/pip uninstall -q -y uv
COPY operator/ operator/
# The wheel, then the checks; pip and setuptools leave the venv (no build tools at runtime).
RUN /opt/promptalias/bin/pip wheel --no-deps --wheel-dir /dist . \
 && /opt/promptalias/bin/pip install --no-deps /dist/promptalias-*.whl \
 && /opt/promptalias/bin/pip check \
 && /opt/promptalias/bin/promptalias --help >/dev/null \
 && /opt/promptalias/bin/python -c "import promptalias.client" \
 && /opt/promptalias/bin/python -m pip uninstall -q -y pip setuptools \
 && find /opt/promptalias -name __pycache__ -prune -exec rm -rf {} +

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
