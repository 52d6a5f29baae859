# promptalias — the two commands a newcomer needs are `make demo` and `make test`.
# Both create the virtualenv, install dependencies and build (or reuse) the control plane themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv controlplane node lint typecheck crds crds-check test unit integration demo bench soak clean

help:
	@echo "make demo   - run the invoice-parser story on a local control plane + MLflow (as pods, as root)"
	@echo "make test   - lint, type-check and run every test (unit, integration, e2e) on the real testbed"
	@echo "make bench  - benchmarks; writes bench-results/ (JSON, Markdown, plots)"
	@echo "make soak   - fault storm (operator SIGKILLs, MLflow freezes): convergence time, history checks"
	@echo "make node   - build the node (kubelet, kube-proxy, kube-scheduler) and its images (root)"
	@echo "make crds   - regenerate crds/ from the pydantic models"
	@echo "make clean  - stop a running testbed and remove the virtualenv and caches"

# Dependencies are installed with uv (from PyPI, into the virtualenv): seconds instead of the
# minutes pip takes for mlflow's tree; its download cache lives in ~/.cache/promptalias/uv.
UV_CACHE := $(HOME)/.cache/promptalias/uv

$(STAMP): pyproject.toml
	@echo "==> [1/3] creating the virtualenv in $(VENV) and installing dependencies (with uv; first run: ~1 min)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is required (found " + sys.version.split()[0] + "); set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "error: could not create a virtualenv; install python3-venv"; exit 1; }
	@$(BIN)/python -m pip install -q --upgrade pip uv || { echo "error: could not install pip/uv from PyPI; check access to PyPI and rerun"; exit 1; }
	@UV_CACHE_DIR=$(UV_CACHE) $(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]' || { echo "error: dependency install failed (see above); check access to PyPI and rerun"; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

controlplane: venv
	@echo "==> [2/3] control plane + helm/kstatus (built once from Go modules, then cached in ~/.cache/promptalias)"
	@$(BIN)/promptalias testbed build >/dev/null
	@$(BIN)/python -m promptalias.testbed.tools build >/dev/null

# The node (kubelet, kube-proxy, kube-scheduler, containerd from Debian) and the images it runs
# (built with buildah, no Docker): needs root; cached in ~/.cache/promptalias (docs/node.md).
node: venv controlplane
	@if [ "$$(id -u)" = 0 ] && [ "$${PROMPTALIAS_NODE:-1}" != 0 ]; then \
	  echo "==> node: kubelet/kube-proxy/kube-scheduler + images (built once, then cached; cold: ~15-25 min)"; \
	  $(BIN)/promptalias testbed build --node >/dev/null; \
	else echo "==> node: skipped (needs root; PROMPTALIAS_NODE=0 disables it): tests/node will be skipped"; fi

lint: venv
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: venv
	@echo "==> mypy --strict"
	@$(BIN)/mypy --cache-dir $(HOME)/.cache/promptalias/mypy

crds: venv
	@$(BIN)/python -m promptalias.api.crdgen --out crds
	@hack/tools/sync-chart-crds.sh

crds-check: venv
	@$(BIN)/python -m promptalias.api.crdgen --out crds --check
	@hack/tools/sync-chart-crds.sh --check

test: venv controlplane node lint typecheck
	@echo "==> [3/3] tests: unit, then integration and e2e on a real kube-apiserver + MLflow (and tests/node beside them, as root)"
	@hack/test-suite.sh $(PYTEST_ARGS)

unit: venv
	@$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: venv controlplane
	@$(BIN)/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

# As root (PROMPTALIAS_NODE != 0) the story runs as pods on the testbed's node; else as processes.
demo: venv controlplane node
	@$(BIN)/promptalias demo

# As root (PROMPTALIAS_NODE != 0) the kubelet baseline is a real kubelet on the testbed's node.
bench: venv controlplane node
	@$(BIN)/python -m benchmarks.run
	@test "$${BENCH_SCALE:-1}" = 0 || $(BIN)/python -m benchmarks.scale
	@$(BIN)/python -m benchmarks.analysis_sim

soak: venv controlplane
	@$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

clean:
	-@test -x $(BIN)/promptalias && $(BIN)/promptalias testbed down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench-results
	@echo "the control-plane build cache stays in ~/.cache/promptalias (remove it by hand to rebuild)"
