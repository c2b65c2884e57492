"""Where the platform keeps its state, resolved when asked (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ML_PLATFORM_HOME"
PROFILE_ENV = "ML_PLATFORM_PROFILE"
PROFILES = ("local", "k8s")


def home() -> Path:
    """The state home: Dagster storage, MLflow store, landing zone and lake live below it."""
    return Path(os.environ.get(HOME_ENV, ".ml_platform")).expanduser().resolve()


def profile() -> str:
    """The active profile, `local` (embedded default) or `k8s`."""
    value = os.environ.get(PROFILE_ENV, "local")
    if value not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={value!r} is not a profile; choose one of {PROFILES}")
    return value


def dagster_home() -> Path:
    return home() / "dagster"


def mlflow_dir() -> Path:
    return home() / "mlflow"


def landing_dir() -> Path:
    return home() / "landing"


def lake_dir() -> Path:
    return home() / "lake"


def serving_dir() -> Path:
    return home() / "serving"
