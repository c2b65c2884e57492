"""The platform as a command sees it: the profile's Dagster instance, landing zone, lake and
MLflow server, from the same `resources_for` the code location uses."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg

from ml_platform import settings
from ml_platform.ops.errors import PlatformError, UsageError
from ml_platform.ops.execute import prepare_dagster_home
from ml_platform.ops.migrations import migrate_day_partitions
from ml_platform.pipeline.resources import initialized, resources_for
from ml_platform.specs import DatasetSpec, ModelSpec, load_specs
from ml_platform.storage.interfaces import LakeStore, LandingStore
from ml_platform.tracking.home_server import HomeServer, ServerUnavailable, home_server
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.server import wait_until_answering


@dataclass
class Platform:
    """The profile's stores, resolved; `specs` are the model specs in use."""

    profile: str
    specs: list[ModelSpec]
    instance: dg.DagsterInstance
    landing: LandingStore
    lake: LakeStore
    tracker: MlflowTracker

    def spec(self, model: str) -> ModelSpec:
        return require_model(self.specs, model)

    def datasets(self) -> list[DatasetSpec]:
        """The datasets of the loaded specs, by name."""
        return sorted({s.dataset.name: s.dataset for s in self.specs}.values(), key=lambda d: d.name)


def require_model(specs: list[ModelSpec], model: str) -> ModelSpec:
    """The spec of `model`; an unknown name is a usage error listing the known ones."""
    for spec in specs:
        if spec.name == model:
            return spec
    raise UsageError(f"unknown model {model!r}; known: {', '.join(s.name for s in specs)}")


def require_dataset(specs: list[ModelSpec], dataset: str) -> ModelSpec:
    """The first spec on `dataset`; an unknown name is a usage error listing the known ones."""
    for spec in specs:
        if spec.dataset.name == dataset:
            return spec
    known = sorted({s.dataset.name for s in specs})
    raise UsageError(f"unknown dataset {dataset!r}; known: {', '.join(known)}")


def require_local(command: str) -> None:
    """`command` runs the embedded `local` profile only; say so in one line otherwise."""
    if settings.profile() != "local":
        raise UsageError(f"`ml-platform {command}` runs the embedded local profile, but "
                         f"{settings.PROFILE_ENV}={settings.profile()}: unset it, or use the "
                         "chart's UI and `ml-platform ingest` against the cluster")


@contextlib.contextmanager
def mlflow_server(mlflow_port: int) -> Iterator[HomeServer]:
    """The tracking server of this command: `MLFLOW_TRACKING_URI` when set (required in the
    `k8s` profile), else (local) the home's own server, started on `mlflow_port` (or a free
    port, said on stderr) if it is not running, and stopped by the last command using it. The
    URI is put in the environment for the command; the caller waits for it (`wait_ready`)."""
    if settings.profile() == "k8s" and not os.environ.get(settings.TRACKING_URI_ENV):
        raise UsageError(f"the k8s profile needs {settings.TRACKING_URI_ENV}: set it to the "
                         "cluster's MLflow server, e.g. http://ml-platform-mlflow:5000")
    with home_server(port=mlflow_port, wait=False) as server:
        if server.note:
            print(server.note, file=sys.stderr)
        if server.external:
            yield server
            return
        os.environ[settings.TRACKING_URI_ENV] = server.url
        try:
            yield server
        finally:
            os.environ.pop(settings.TRACKING_URI_ENV, None)


@contextlib.contextmanager
def open_platform(mlflow_port: int = 5000, *, mlflow: bool = True,
                  wait_for_mlflow: bool = True) -> Iterator[Platform]:
    """The active profile's platform for the duration of a command. `mlflow=False`: the
    command needs no tracking server (none is started or checked)."""
    profile = settings.profile()
    specs = load_specs()
    prepare_dagster_home(profile)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(mlflow_server(mlflow_port)) if mlflow else None
        try:
            instance = dg.DagsterInstance.get()
        except Exception as exc:  # the instance's storage is down or misconfigured
            # A missing setting, when there is one, is the first thing to fix: named first.
            stack.enter_context(initialized(resources_for(profile, specs)))
            raise PlatformError(f"the Dagster instance of {settings.dagster_home()} cannot be "
                                f"opened: {str(exc).strip().splitlines()[0]}") from exc
        resources = stack.enter_context(initialized(resources_for(profile, specs), instance))
        if server is not None and wait_for_mlflow:
            _check_answering(server, resources["mlflow"])
        datasets = {s.dataset.name: s.dataset for s in specs}.values()
        for dataset in migrate_day_partitions(instance, datasets):
            print(f"{dataset}: days migrated to daily partitions", file=sys.stderr)
        yield Platform(profile, specs, instance, resources["landing"], resources["lake"],
                       resources["mlflow"])


def _check_answering(server: HomeServer, tracker: MlflowTracker) -> None:
    """Wait for the home's server; fail at once, naming it, when the one
    `MLFLOW_TRACKING_URI` names does not answer."""
    if not server.external:
        try:
            server.wait_ready()
        except ServerUnavailable as exc:
            raise PlatformError(str(exc)) from exc
        return
    uri = tracker.public_uri
    if uri.startswith("http"):
        try:
            wait_until_answering(uri, timeout=5)
        except TimeoutError as exc:
            raise PlatformError(f"the MLflow server at {uri} ({settings.TRACKING_URI_ENV}) is not "
                                "answering: start it, or unset the variable") from exc
