"""Registry drift: `production` moved outside the platform (the MLflow UI, or a plain
`MlflowClient.set_registered_model_alias`), noticed by polling the registry.

The platform follows and never fights: the move is recorded in the history (a `production`
materialization, `kind` and `triggered_by` `external`; MLflow records neither who moved an
alias nor when, so `at` is when the sensor noticed), the version gets the production status,
and a run of `<model>/serving` brings the endpoint to it. Nothing is reverted. MLflow's
webhooks would spare the polling, but the SQLite/file registry of the local profile has none.

A move is the platform's own, not drift, while the promotion lock is held (the alias and its
status tag are being set) or when the alias's version carries the status a platform move
sets (the step or command is about to record it).
"""


import datetime as dt

import dagster as dg

from ml_platform import names
from ml_platform.names import RunTag, Tag
from ml_platform.pipeline.keys import model_key
from ml_platform.pipeline.model.production import production_event
from ml_platform.records import PromotionRecord
from ml_platform.specs import ModelSpec
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import lock_held, mark_status

EXTERNAL = "external"
INTERVAL_S = 30
"""How often the registry is polled: a moved alias is followed within this long (plus the
`serving` run). Not the landing sensors' interval: each tick asks the tracking server."""


def recorded_version(instance: dg.DagsterInstance, model: str) -> str | None:
    """The production version of the newest `production` materialization."""
    event = instance.get_latest_materialization_event(model_key(model, "production"))
    if event is None or event.asset_materialization is None:
        return None
    version = event.asset_materialization.metadata.get("version")
    return str(getattr(version, "value", version)) if version is not None else None


def external_move(instance: dg.DagsterInstance, tracker: MlflowTracker,
                  model: str) -> PromotionRecord | None:
    """The move of `model`'s production alias made outside the platform since the last
    recorded one, or None. Marks the version's production status."""
    if not tracker.registered(model):
        return None
    current = tracker.alias_version(model, names.PRODUCTION_ALIAS)
    recorded = recorded_version(instance, model)
    if current is None or current == recorded or lock_held(tracker, model):
        return None
    status = tracker.client().get_model_version(model, current).tags.get(Tag.PROMOTION_STATUS, "")
    if status.startswith(f"{names.PRODUCTION_ALIAS} (") and status != _status(EXTERNAL):
        return None  # the platform's own move, about to be recorded
    record = PromotionRecord(
        model=model, version=current, previous_version=recorded or "", kind=EXTERNAL,
        reason="the production alias was moved outside the platform (MLflow UI or API)",
        triggered_by=EXTERNAL, at=dt.datetime.now(dt.UTC).isoformat())
    mark_status(tracker, record)
    return record


def _status(kind: str) -> str:
    return f"{names.PRODUCTION_ALIAS} ({kind})"


def registry_drift_sensor(spec: ModelSpec) -> dg.SensorDefinition:
    model = spec.name
    interval = INTERVAL_S

    @dg.sensor(
        name=names.drift_sensor(model), job_name=names.pipeline_job(model),
        minimum_interval_seconds=interval, default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Every {interval}s: if {model}'s `production` alias was moved outside the "
                    "platform, record the move (external) and bring `serving` to it. Never "
                    "reverts it.",
    )
    def _sensor(context: dg.SensorEvaluationContext,
                mlflow: MlflowTracker) -> dg.SensorResult | dg.SkipReason:
        move = external_move(context.instance, mlflow, model)
        if move is None:
            return dg.SkipReason(f"{model}@production is where the platform recorded it")
        context.log.info(f"{model}@production moved outside the platform: "
                         f"v{move.previous_version or '-'} -> v{move.version}")
        return dg.SensorResult(
            asset_events=[production_event(mlflow, move, f"{move.kind}: {move.reason}")],
            run_requests=[dg.RunRequest(
                run_key=f"drift:{model}:{move.version}:{move.at}",
                asset_selection=[model_key(model, "serving")],
                tags={RunTag.TRIGGER: "registry_drift"})],
        )

    return _sensor
