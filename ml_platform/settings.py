"""Where the platform keeps its state and which profile it runs, resolved when asked (never at
import time). Every environment variable the platform reads is named here."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

HOME_ENV = "ML_PLATFORM_HOME"
PROFILE_ENV = "ML_PLATFORM_PROFILE"
TRAINER_ENV = "ML_PLATFORM_TRAINER"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DAGSTER_URL_ENV = "ML_PLATFORM_DAGSTER_URL"
BUCKET_ENV = "ML_PLATFORM_S3_BUCKET"
LANDING_PREFIX_ENV = "ML_PLATFORM_LANDING_PREFIX"
LAKE_PREFIX_ENV = "ML_PLATFORM_LAKE_PREFIX"
SERVING_ENV = "ML_PLATFORM_SERVING"
"""k8s: where the chart's model endpoints are (JSON, `serving.cluster.ClusterServing`)."""
CODE_PACKAGE_ENV = "ML_PLATFORM_CODE_PACKAGE"
"""Set on a training pod by code sync: where its code package is (a lake URI). Unset: the pod
runs the image's code (code sync off)."""
CODE_HASH_ENV = "ML_PLATFORM_CODE_HASH"
"""Set on a training pod: the content hash of the code it must run (the package's, or with code
sync off the image's own `ml_platform`, checked before training)."""
RUNTIME_LOCK_ENV = "ML_PLATFORM_RUNTIME_LOCK"
"""Set on a training pod: the sha256 of the runtime lock the orchestrator's code was made with;
the pod's image must have been built from the same."""
PRICES_ENV = "ML_PLATFORM_PRICES"
"""The cluster-wide price table of trainings (JSON: `PRICE_FIELDS`); a spec's
`compute.prices` overrides it. Unset: no cost is estimated."""
PRICE_FIELDS = ("gpu_hour", "cpu_hour", "memory_gib_hour")
"""A price table's entries: per GPU-hour, per CPU-hour (requested cores), per GiB-hour of
requested memory; an entry left out costs nothing."""

PROFILES = ("local", "k8s")
TRAINERS = ("process", "pod")


class SettingError(ValueError):
    """An environment variable with a value the platform cannot use; the message names it."""


def home() -> Path:
    """The state home: in the `local` profile Dagster storage, MLflow store, landing zone and
    lake live below it; in the `k8s` profile only training scratch and local checkpoints."""
    return Path(os.environ.get(HOME_ENV, ".ml_platform")).expanduser().resolve()


def profile() -> str:
    """The active profile, `local` (embedded default) or `k8s`."""
    value = os.environ.get(PROFILE_ENV, "local")
    if value not in PROFILES:
        raise SettingError(f"{PROFILE_ENV}={value!r} is not a profile; choose one of "
                           f"{', '.join(PROFILES)}")
    return value


def trainer() -> str:
    """Where training runs: `process` (a child process; the `local` profile's default) or `pod`
    (a Kubernetes pod; the `k8s` profile's default). `process` under `k8s` trains beside the
    orchestrator against the cluster's stores (a laptop, CI)."""
    default = "pod" if profile() == "k8s" else "process"
    value = os.environ.get(TRAINER_ENV, default)
    if value not in TRAINERS:
        raise SettingError(f"{TRAINER_ENV}={value!r} is not a trainer; choose one of "
                           f"{', '.join(TRAINERS)}")
    return value


def prices() -> dict[str, float] | None:
    """The cluster-wide price table (`$ML_PLATFORM_PRICES`), None when unset or empty."""
    import json

    text = os.environ.get(PRICES_ENV, "").strip()
    if not text:
        return None
    try:
        table = json.loads(text)
    except ValueError:
        table = None
    if not isinstance(table, dict):
        raise SettingError(f"{PRICES_ENV} is not a JSON object such as "
                           '{"gpu_hour": 2.5, "cpu_hour": 0.04, "memory_gib_hour": 0.005}')
    unknown = sorted(set(table) - set(PRICE_FIELDS))
    if unknown:
        raise SettingError(f"{PRICES_ENV}: unknown price(s) {unknown}; known: {list(PRICE_FIELDS)}")
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SettingError(f"{PRICES_ENV}: {key}={value!r} is not a price (a number >= 0)")
    return {key: float(table.get(key, 0.0)) for key in PRICE_FIELDS} if table else None


def dagster_home() -> Path:
    """DAGSTER_HOME if set; else `$ML_PLATFORM_HOME/dagster` (local) or, for `k8s`, a folder
    outside the state home (the instance's data is in PostgreSQL: only its config is here)."""
    if value := os.environ.get(DAGSTER_HOME_ENV):
        return Path(value).expanduser().resolve()
    if profile() == "k8s":
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return state / "ml_platform" / "dagster-k8s"
    return home() / "dagster"


def instance_config(profile_name: str) -> str:
    """The Dagster instance configuration (dagster.yaml) of a profile, shipped with the package."""
    if profile_name not in PROFILES:
        raise SettingError(f"no instance configuration for profile {profile_name!r}")
    return resources.files("ml_platform.instance").joinpath(f"{profile_name}.yaml").read_text()


def mlflow_dir() -> Path:
    return home() / "mlflow"


def landing_dir() -> Path:
    return home() / "landing"


def lake_dir() -> Path:
    return home() / "lake"


def serving_dir() -> Path:
    """The local endpoint's files: the running `serve`'s address and the downloaded versions."""
    return home() / "serving"
