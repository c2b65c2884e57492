"""`MlflowTracker`: the orchestrator's handle on the MLflow tracking server and registry.

Why not dagster-mlflow's `mlflow_tracking`: it keys one MLflow run per *Dagster run* (found by
tag search, racy across parallel steps) and ends it from a hook; this platform needs one MLflow
run per *training materialization*, created before the training process starts.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import dagster as dg

from ml_platform import names
from ml_platform.names import Tag
from ml_platform.settings import TRACKING_URI_ENV
from ml_platform.tracking.home_server import wait_for_home_server
from ml_platform.tracking.http_bounds import apply_http_bounds
from ml_platform.tracking.server import wait_until_answering

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

_ANSWERING: set[str] = set()
REGISTRATION_TIMEOUT_S = 300


class MlflowTracker(dg.ConfigurableResource):
    """Runs, registry and aliases on one MLflow tracking server."""

    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI
    dagster_url: str = "http://127.0.0.1:3000"

    @property
    def uri(self) -> str:
        uri = self.tracking_uri or os.environ.get(TRACKING_URI_ENV)
        if not uri:
            raise ValueError(
                f"no MLflow tracking server: set {TRACKING_URI_ENV} or the `tracking_uri` of the "
                "`mlflow` resource (`ml-platform dev` and `ml-platform demo` start one for you)"
            )
        return uri.rstrip("/")

    @property
    def public_uri(self) -> str:
        """The tracking URI without credentials: the only form put in links and metadata."""
        parts = urlsplit(self.uri)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc)) if parts.netloc else self.uri

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        uri = self.uri
        if uri.startswith("http") and uri not in _ANSWERING:
            # A dead server fails a request in seconds, not MLflow's minutes (here and in
            # every child started after this, the training process included).
            apply_http_bounds()
            # This home's server, started alongside the run (the demo), may still be booting:
            # wait until it answers as this home's, once per process. Any other server is
            # asked once: if it does not answer, the step fails now, naming it.
            if not wait_for_home_server(self.public_uri):
                wait_until_answering(self.public_uri, timeout=0)
            _ANSWERING.add(uri)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    # -- runs -------------------------------------------------------------------------------

    def experiment_id(self, model: str) -> str:
        client, name = self.client(), names.experiment(model)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(
                name, tags={Tag.MODEL: model, Tag.EXPERIMENT_KIND: names.ML_EXPERIMENT_KIND})
        except Exception:  # created concurrently by another step
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def run_url(self, run_id: str) -> str:
        run = self.client().get_run(run_id)
        return (f"{self.public_uri}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
                f"{names.ML_VIEW_QUERY}")

    def model_version_url(self, model: str, version: str) -> str:
        return f"{self.public_uri}/#/models/{model}/versions/{version}{names.ML_VIEW_QUERY}"

    def dagster_run_url(self, run_id: str) -> str:
        return f"{self.dagster_url.rstrip('/')}/runs/{run_id}"

    def _newest_run(self, model: str, tags: dict[str, str], status: str) -> Run | None:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in sorted(tags.items()))
        runs = self.client().search_runs(
            [self.experiment_id(model)], filter_string=f"{query} and attributes.status {status}",
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        return runs[0] if runs else None

    def find_run(self, model: str, tags: dict[str, str]) -> Run | None:
        """The newest FINISHED run of `model` carrying all `tags` (and a logged model)."""
        run = self._newest_run(model, tags, "= 'FINISHED'")
        return run if run and run.data.tags.get(Tag.MODEL_URI) else None

    def find_unfinished_run(self, model: str, tags: dict[str, str]) -> str | None:
        """The newest run of `model` carrying `tags` that never finished (its training process
        died or the step was retried): the run a retry resumes."""
        run = self._newest_run(model, tags, "!= 'FINISHED'")
        return run.info.run_id if run else None

    def create_run(self, model: str, run_name: str, tags: dict[str, str]) -> str:
        run = self.client().create_run(self.experiment_id(model), run_name=run_name, tags=tags)
        return run.info.run_id

    # -- registry ---------------------------------------------------------------------------

    def register(self, model: str, model_uri: str, run_id: str,
                 tags: dict[str, str]) -> ModelVersion:
        """Register `model_uri` as a new version of `model`, or return the version already
        registered from `run_id`: a retried registration never creates a second version."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            client.create_registered_model(model, tags={Tag.MODEL: model})
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        existing = client.search_model_versions(f"name = '{model}' and run_id = '{run_id}'")
        if existing:
            return sorted(existing, key=lambda v: int(v.version))[0]
        # MLflow 3 logs models as LoggedModels (`models:/m-<id>`): the version must name it.
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        # MLflow's own wait says "Waiting up to 300 seconds..." on every registration, a wait that
        # is over at once on this platform's servers: wait here, silently, for the same status.
        version = client.create_model_version(
            model, model_uri, run_id=run_id, tags=tags, model_id=model_id, await_creation_for=0
        )
        deadline = time.monotonic() + REGISTRATION_TIMEOUT_S
        while version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
            time.sleep(1)
            version = client.get_model_version(model, version.version)
        if version.status != "READY":
            raise RuntimeError(f"model version {model} v{version.version} is {version.status} "
                               f"after {REGISTRATION_TIMEOUT_S}s: {version.status_message or ''}")
        return version

    def registered(self, model: str) -> bool:
        """Whether `model` is a registered model (it has had a version)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client().get_registered_model(model)
        except MlflowException:
            return False
        return True

    def alias_version(self, model: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(model, alias).version
        except MlflowException:
            return None

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self.client().set_registered_model_alias(model, alias, version)
