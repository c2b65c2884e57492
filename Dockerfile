# syntax=docker/dockerfile:1
# The ml_platform image: Dagster webserver, daemon and user code, run workers, training pods and
# the MLflow server all run it (see docs/kubernetes.md). CPU torch by default; for GPU nodes
# build with a CUDA torch index (and, if you want CUDA tools in the image, a CUDA base):
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t ... .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    ML_PLATFORM_HOME=/tmp/ml-platform \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false

# A fixed non-root user; the chart's securityContext runs every pod as 10001.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin app

WORKDIR /opt/ml-platform

# torch first, in its own layer: pinned, from the PyTorch index the build chooses.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==2.13.0"

# Dependencies next (cached while only code changes): exactly the runtime lock, then the package
# metadata with an empty package. Training pods compare this lock's hash (the copy inside the
# package below) with the one the orchestrator's code was made with (code sync).
COPY pyproject.toml README.md ml_platform/runtime.lock ./
RUN pip install -r runtime.lock \
 && mkdir ml_platform && touch ml_platform/__init__.py && pip install --no-deps -e . \
 && python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"

COPY ml_platform ./ml_platform
RUN mkdir -p "${DAGSTER_HOME}" \
 && python -c "import ml_platform.definitions"

USER 10001:10001
EXPOSE 3000 3030 5000
# The user-code server by default; the chart sets each component's command.
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "3030", "--module-name", "ml_platform.definitions"]
