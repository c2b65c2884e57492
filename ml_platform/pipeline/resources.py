"""`resources_for(profile)`: the one wiring of the platform's stores, used by the code location
and by every CLI command, so both act on the same landing zone, lake, tracking server and
compute backend.

- `landing`, `lake`: folders under `ML_PLATFORM_HOME` (local); S3 (k8s: bucket
  `ML_PLATFORM_S3_BUCKET`; endpoint, region and credentials from boto3's environment).
- `mlflow`: the server of `MLFLOW_TRACKING_URI` (local: the CLI starts one when unset).
- `trainer`: a child process (local); a pod per training (k8s), or a child process with
  `ML_PLATFORM_TRAINER=process`.
- `notifier`: where failed runs are reported.

Values are resolved when a run starts (`dg.EnvVar`), or at once by `initialized`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from ml_platform import settings
from ml_platform.compute.local import LocalProcessTrainer
from ml_platform.pipeline.notifications import Notifier
from ml_platform.specs import ModelSpec
from ml_platform.storage.lake import Lake
from ml_platform.storage.landing import LandingZone
from ml_platform.tracking.mlflow_resource import MlflowTracker


def resources_for(profile: str | None = None,
                  specs: Sequence[ModelSpec] = ()) -> dict[str, dg.ConfigurableResource]:
    """The resources of `profile` (default: `ML_PLATFORM_PROFILE`); `specs` shape the pods."""
    profile = profile or settings.profile()
    common: dict[str, dg.ConfigurableResource] = {"notifier": Notifier()}
    if profile == "local":
        trainer: dg.ConfigurableResource = LocalProcessTrainer()
        if settings.trainer() == "pod":
            raise settings.SettingError(f"{settings.TRAINER_ENV}=pod needs "
                                        f"{settings.PROFILE_ENV}=k8s")
        return {**common, "landing": LandingZone(), "lake": Lake(), "mlflow": MlflowTracker(),
                "trainer": trainer}
    from dagster_aws.s3 import S3Resource

    from ml_platform.storage.s3 import S3Lake, S3LandingZone

    if settings.trainer() == "pod":
        from ml_platform.compute.k8s import K8sPodTrainer

        trainer = K8sPodTrainer.from_env(specs)
    else:
        trainer = LocalProcessTrainer()
    bucket = dg.EnvVar(settings.BUCKET_ENV)
    return {
        **common,
        "landing": S3LandingZone(s3=S3Resource(), bucket=bucket,
                                 prefix=os.environ.get(settings.LANDING_PREFIX_ENV, "landing")),
        "lake": S3Lake(s3=S3Resource(), bucket=bucket,
                       prefix=os.environ.get(settings.LAKE_PREFIX_ENV, "lake")),
        "mlflow": MlflowTracker(
            dagster_url=os.environ.get(settings.DAGSTER_URL_ENV, "http://127.0.0.1:3000")),
        "trainer": trainer,
    }


@contextlib.contextmanager
def initialized(resources: dict[str, dg.ConfigurableResource],
                instance: dg.DagsterInstance | None = None) -> Iterator[dict[str, Any]]:
    """The resources with their configuration resolved now (environment variables read), set
    up and torn down as in a run, for use outside one (the CLI). A missing setting fails with
    one line naming it. `instance`: the command's own (without one, Dagster makes an
    ephemeral instance per resource: a tenth of a second each)."""
    with contextlib.ExitStack() as stack:
        out = {}
        for name, resource in resources.items():
            try:
                if instance is None:
                    out[name] = stack.enter_context(resource.process_config_and_initialize_cm())
                else:
                    built = stack.enter_context(dg.build_resources({name: resource},
                                                                   instance=instance))
                    out[name] = getattr(built, name)
            except dg.DagsterInvalidConfigError as exc:
                unset = [e for e in exc.errors if "environment variable" in e.message]
                reason = (unset or exc.errors)[0].message if exc.errors else str(exc)
                raise settings.SettingError(
                    f"the `{name}` resource cannot be configured: {reason}") from exc
        yield out
