"""Every name the platform's layers share: asset keys, lake keys, MLflow tag names, Dagster
run tags, partition, job, sensor and schedule names, in one place.

A name that two modules must agree on lives here and nowhere else; renaming it here renames
it everywhere. This module imports nothing of the platform (and no Dagster), so every layer
may import it.
"""

from __future__ import annotations

from typing import Final

# -- the asset chain of one model ---------------------------------------------------------------

STAGES: Final = ("features", "training_set", "trained", "evaluation", "registered",
                 "production", "serving")
"""The stages of every model's chain, in order: each one depends on the one before."""
OPTIONAL_STAGES: Final = ("predictions",)
"""Stages a spec may add beside the chain: `predictions` (`batch_inference`), downstream of the
dataset's validated days and of `production`."""
RETRAIN_STAGES: Final = STAGES[STAGES.index("trained"):]
"""What a retrain of an unchanged training set runs (`demo --retrain`: the inner loop)."""
DATASET_STAGES: Final = ("raw", "validated")


def dataset_asset_path(dataset: str, stage: str) -> list[str]:
    """`[dataset, stage]`: the path of `<dataset>/raw` or `<dataset>/validated`."""
    if stage not in DATASET_STAGES:
        raise ValueError(f"unknown dataset stage {stage!r}; known: {DATASET_STAGES}")
    return [dataset, stage]


def model_asset_path(model: str, stage: str) -> list[str]:
    """`[model, stage]`: the path of `<model>/<stage>`."""
    if stage not in STAGES and stage not in OPTIONAL_STAGES:
        raise ValueError(f"unknown model stage {stage!r}; known: {STAGES + OPTIONAL_STAGES}")
    return [model, stage]


# -- jobs, partitions, sensors, schedules -------------------------------------------------------

def pipeline_job(model: str) -> str:
    """Every asset of `model` from landed data to serving."""
    return f"{model}_pipeline"


def retrain_job(dataset: str) -> str:
    """Validate days of `dataset`, retrain, gate and promote every model on it."""
    return f"{dataset}_retrain"


def legacy_day_partitions(dataset: str) -> str:
    """The dynamic partitions of `dataset`'s days in homes made before days were daily
    partitions (`ops.migrations`)."""
    return f"{dataset}_days"


def landing_sensor(dataset: str) -> str:
    return f"{dataset}_landing_sensor"


def daily_schedule(dataset: str) -> str:
    return f"{dataset}_daily"


def drift_sensor(model: str) -> str:
    """Notices `model`'s production alias moved outside the platform."""
    return f"{model}_registry_drift"


FAILURE_SENSOR: Final = "alert_on_run_failure"
PREVIOUS_DAY_CHECK: Final = "previous_day_complete"
PROMOTION_GATES_CHECK: Final = "promotion_gates"
GPU_UTILIZATION_CHECK: Final = "gpu_utilization"
TRAINING_POOL: Final = "training"
"""The concurrency pool of the `trained` steps (limits in the instance configuration)."""

# -- lake keys ----------------------------------------------------------------------------------

def raw_versions_prefix(dataset: str, day: str) -> str:
    """The folder of every version of a day's landed file the lake keeps."""
    return f"{dataset}/raw/{day}/"


def raw_lake_key(dataset: str, day: str, sha256: str) -> str:
    """Content-addressed: a re-landed day adds a version, never overwrites one."""
    return f"{raw_versions_prefix(dataset, day)}{sha256}.parquet"


def validated_lake_key(dataset: str, day: str) -> str:
    return f"{dataset}/validated/{day}.parquet"


def features_lake_key(model: str, day: str) -> str:
    """The feature table of one validated day of `model`'s dataset (rewritten when the day is
    validated again; its Parquet metadata names the landed file it came from)."""
    return f"{model}/features/{day}.parquet"


def training_set_lake_key(model: str, training_set_hash: str) -> str:
    """Content-addressed: an existing snapshot is never rewritten."""
    return f"{model}/training_set/{training_set_hash[:16]}.parquet"


def predictions_lake_key(model: str, day: str) -> str:
    """The predictions of one validated day (rewritten when the day is scored again)."""
    return f"{model}/predictions/{day}.parquet"


def serving_lake_key(model: str) -> str:
    return f"serving/{model}.json"


def checkpoints_lake_key(model: str, mlflow_run_id: str) -> str:
    return f"checkpoints/{model}/{mlflow_run_id}"


def code_package_lake_key(code_hash: str) -> str:
    """The code package shipped to training pods (`compute.code_package`), by content hash."""
    return f"code/{code_hash}.tar.gz"


# -- MLflow -------------------------------------------------------------------------------------

def experiment(model: str) -> str:
    return f"ml_platform/{model}"


CODE_SYNC_SECONDS: Final = "code_sync_seconds"
"""Metric of a pod's training: how long its pod took to check (and fetch) its code."""
PRODUCTION_ALIAS: Final = "production"
CANDIDATE_ALIAS: Final = "candidate"


class Tag:
    """MLflow tag names on runs, model versions and registered models."""

    MODEL: Final = "ml_platform.model"
    TRAINING_SET_HASH: Final = "ml_platform.training_set_hash"
    FEATURES_HASH: Final = "ml_platform.features_hash"
    CODE_VERSION: Final = "ml_platform.code_version"
    CODE_PACKAGE: Final = "ml_platform.code_package"
    """The content hash of the code a training pod ran (`compute.code_package`)."""
    CODE_SOURCE: Final = "ml_platform.code_source"
    """`code package` (shipped by code sync) or `image` (code sync off)."""
    MODEL_URI: Final = "ml_platform.model_uri"
    GATES: Final = "ml_platform.gates"
    GATES_PASSED: Final = "ml_platform.gates_passed"
    PROMOTION_STATUS: Final = "ml_platform.promotion_status"
    PROMOTION_RECORD_PREFIX: Final = "ml_platform.promotion."
    DAGSTER_RUN_ID: Final = "dagster.run_id"
    DAGSTER_ROOT_RUN_ID: Final = "dagster.root_run_id"
    DAGSTER_RUN_URL: Final = "dagster.run_url"
    DAGSTER_ASSET_KEY: Final = "dagster.asset_key"
    DAGSTER_PARTITIONS: Final = "dagster.partitions"
    DATASET_PARTITIONS: Final = "ml_platform.partitions"
    DATASET_PARTITION_KEYS: Final = "ml_platform.partition_keys"
    """On an MLflow dataset input: the raw days it was built from (compact, and every key)."""
    LINKED_PREFIXES: Final = ("dagster.", "ml_platform.")
    """Run tags a model version copies from its run."""
    # MLflow's own tags: the run's description (Markdown), its source and user, and the
    # experiment kind that makes the UI open in its machine-learning layout.
    DESCRIPTION: Final = "mlflow.note.content"
    SOURCE_NAME: Final = "mlflow.source.name"
    SOURCE_TYPE: Final = "mlflow.source.type"
    USER: Final = "mlflow.user"
    EXPERIMENT_KIND: Final = "mlflow.experimentKind"


class Usage:
    """What a training used and cost: keys on its MLflow run (numbers are metrics, the rest
    tags) and in the `trained` asset's metadata, read back by `ml-platform costs`."""

    PREFIX: Final = "usage."
    WALL_SECONDS: Final = "usage.wall_seconds"
    CPU_SECONDS: Final = "usage.cpu_seconds"
    PEAK_MEMORY_MIB: Final = "usage.peak_memory_mib"
    PROCESSES: Final = "usage.processes"
    GPU: Final = "usage.gpu"
    """Tag: the GPUs' names, or `NO_GPU`."""
    GPU_COUNT: Final = "usage.gpu_count"
    GPU_SECONDS: Final = "usage.gpu_seconds"
    GPU_UTILIZATION: Final = "usage.gpu_utilization_pct"
    """Mean over the samples and GPUs, in percent."""
    GPU_PEAK_MEMORY_MIB: Final = "usage.gpu_peak_memory_mib"
    REQUEST_CPU: Final = "usage.request.cpu"
    REQUEST_MEMORY: Final = "usage.request.memory"
    REQUEST_GPU: Final = "usage.request.gpu"
    REQUEST_NODES: Final = "usage.request.nodes"
    PRICES: Final = "usage.prices"
    """Tag: the price table the cost was estimated with (JSON), or `NO_PRICES`."""
    COST: Final = "usage.cost"
    COST_GPU: Final = "usage.cost.gpu"
    COST_CPU: Final = "usage.cost.cpu"
    COST_MEMORY: Final = "usage.cost.memory"
    NO_GPU: Final = "no GPU"
    NO_PRICES: Final = "none"


ML_EXPERIMENT_KIND: Final = "custom_model_development"
ML_VIEW_QUERY: Final = "?workflowType=machine_learning"
"""Appended to MLflow UI links: MLflow 3 otherwise opens its GenAI layout."""


REGISTRY_LOCK_PREFIX: Final = "ml_platform-lock-"

# -- the inference endpoint --------------------------------------------------------------------

MODEL_VERSION_HEADER: Final = "X-Model-Version"
"""On every answer of the endpoint: the model version that answered."""
SERVE_PORT: Final = 8080
"""The default port of `ml-platform serve`."""


def invocations_path(model: str) -> str:
    """MLflow's scoring protocol for `model` at the endpoint."""
    return f"/models/{model}/invocations"


# -- Dagster run tags ---------------------------------------------------------------------------

class RunTag:
    """Tags on Dagster runs (what started them, which days) and steps."""

    TRIGGER: Final = "ml_platform/trigger"
    DAYS: Final = "ml_platform/days"
    GPU: Final = "ml_platform/gpu"
    HOST: Final = "ml_platform/host"
    PID: Final = "ml_platform/pid"
    """The host and process of a command that ran the run in process (orphan detection)."""
    PARTITION_RANGE_START: Final = "dagster/asset_partition_range_start"
    PARTITION_RANGE_END: Final = "dagster/asset_partition_range_end"
