"""Every field of a model spec does what it says: for each leaf field, a changed value changes
what the platform builds from the spec — the generated definitions (asset keys, owners,
descriptions, checks, freshness, sensors), the training request, the rendered training pod,
the validation of a landed day or the simulated data. A field added without an entry here
fails `test_every_field_is_covered`. Nothing is faked; no server is started."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel

from ml_platform import names
from ml_platform.compute.k8s import render_training_pod
from ml_platform.compute.request import TrainingRequest
from ml_platform.ml.validation import normalise_dates, validate
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key, raw_key, validated_key
from ml_platform.simulation.generators import generate
from ml_platform.specs import ModelSpec, load_specs

SPECS = {s.name: s for s in load_specs()}
DAY = dt.date(2026, 3, 1)


def mutate(spec: ModelSpec, **changes: Any) -> ModelSpec:
    """`spec` with the dotted fields (`dataset__rows_per_day`) set, validated again."""
    raw = spec.model_dump(mode="json")
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = value
    return ModelSpec.model_validate(raw)


def asset_spec(spec: ModelSpec, key: Any) -> Any:
    defs = build_definitions([spec])
    return next(a for a in defs.resolve_all_asset_specs() if a.key == key)


def check_description(spec: ModelSpec, stage: str, check: str) -> str | None:
    graph = build_definitions([spec]).resolve_asset_graph()
    keys = graph.get(model_key(spec.name, stage)).check_keys
    return next(graph.get_check_spec(k).description for k in keys if k.name == check)


def request(spec: ModelSpec) -> TrainingRequest:
    return TrainingRequest.for_spec(spec, training_set_uri="u", mlflow_run_id="r", checkpoint_dir="c")


def pod(spec: ModelSpec) -> dict[str, Any]:
    return render_training_pod(spec)["spec"]


def outcomes(spec: ModelSpec) -> list[tuple[str, bool, str]]:
    """Validation of a generated day of the listing_price dataset, with one damaged row."""
    frame = generate("bookings", DAY, 20)
    frame.loc[0, "bedrooms"] = 15
    return [(o.name, o.passed, o.description)
            for o in validate(frame, spec.dataset, day=DAY, expected_rows=spec.dataset.rows_per_day)]


def aware_outcomes(spec: ModelSpec) -> list[tuple[str, bool, str]]:
    """Validation of a day landed with timezone-aware timestamps, normalised as the pipeline does."""
    frame = generate("bookings", DAY, 20)
    frame["booking_date"] = pd.Timestamp(f"{DAY}T09:00", tz="Europe/Berlin")
    frame = normalise_dates(frame, spec.dataset)
    return [(o.name, o.passed, o.description)
            for o in validate(frame, spec.dataset, day=DAY, expected_rows=spec.dataset.rows_per_day)]


def asset_keys(spec: ModelSpec) -> list[str]:
    return sorted(k.to_user_string() for k in build_definitions([spec]).resolve_all_asset_keys())


def gates(spec: ModelSpec) -> str | None:
    return check_description(spec, "evaluation", names.PROMOTION_GATES_CHECK)


def sensor(spec: ModelSpec) -> Any:
    return build_definitions([spec]).resolve_sensor_def(names.landing_sensor(spec.dataset.name))


LP, FR = SPECS["listing_price"], SPECS["feed_ranking"]
Observation = Callable[[ModelSpec], Any]

# field: (base spec, changes, what is observed)
CASES: dict[str, tuple[ModelSpec, dict[str, Any], Observation]] = {
    "name": (LP, {"name": "other_model"},
             asset_keys),
    "description": (LP, {"description": "Prices."},
                    lambda s: build_definitions([s]).resolve_job_def(names.pipeline_job(s.name)).description),
    "owner": (LP, {"owner": "other-team"}, lambda s: asset_spec(s, model_key(s.name, "trained")).owners),
    "freshness.warn_hours": (LP, {"freshness__warn_hours": 12},
                             lambda s: asset_spec(s, model_key(s.name, "production")).freshness_policy),
    "freshness.fail_hours": (LP, {"freshness__fail_hours": 200},
                             lambda s: asset_spec(s, model_key(s.name, "production")).freshness_policy),
    "dataset.name": (LP, {"dataset__name": "stays"},
                     asset_keys),
    "dataset.generator": (LP, {"dataset__generator": "engagement"},
                          lambda s: list(generate(s.dataset.generator, DAY, 5).columns)),
    "dataset.key": (LP, {"dataset__key": "listing_id"}, outcomes),
    "dataset.date_column": (
        FR, {"dataset__date_column": "day", "dataset__columns": {
            ("day" if c == "event_date" else c): v
            for c, v in FR.model_dump(mode="json")["dataset"]["columns"].items()}},
        lambda s: request(s).query_columns),
    "dataset.columns": (LP, {"dataset__columns__bedrooms__max": 10}, outcomes),
    "dataset.rows_per_day": (LP, {"dataset__rows_per_day": 20}, outcomes),
    "dataset.min_completeness": (LP, {"dataset__min_completeness": 0.01}, outcomes),
    "dataset.max_rows_factor": (mutate(LP, dataset__rows_per_day=2), {"dataset__max_rows_factor": 50},
                                outcomes),
    "dataset.date_timezone": (LP, {"dataset__date_timezone": "Europe/Berlin"}, aware_outcomes),
    "dataset.freshness.warn_hours": (LP, {"dataset__freshness__warn_hours": 5},
                                     lambda s: asset_spec(s, raw_key(s.dataset.name)).freshness_policy),
    "dataset.freshness.fail_hours": (LP, {"dataset__freshness__fail_hours": 500},
                                     lambda s: asset_spec(s, validated_key(s.dataset.name)).freshness_policy),
    "dataset.sensor_interval_seconds": (LP, {"dataset__sensor_interval_seconds": 5},
                                        lambda s: sensor(s).minimum_interval_seconds),
    "dataset.debounce_seconds": (LP, {"dataset__debounce_seconds": 5}, lambda s: sensor(s).description),
    "dataset.schedule_cron": (LP, {"dataset__schedule_cron": "30 1 * * *"},
                              lambda s: build_definitions([s]).resolve_schedule_def(
                                  names.daily_schedule(s.dataset.name)).cron_schedule),
    "dataset.start_date": (LP, {"dataset__start_date": "2025-06-01"},
                           lambda s: asset_spec(s, raw_key(s.dataset.name)).partitions_def.start),
    "dataset.raw_versions_kept": (LP, {"dataset__raw_versions_kept": 3},
                                  lambda s: asset_spec(s, raw_key(s.dataset.name)).description),
    "dataset.retry_max_hours": (LP, {"dataset__retry_max_hours": 2}, lambda s: sensor(s).description),
    "dataset.require_previous_day_complete": (
        LP, {"dataset__require_previous_day_complete": True},
        lambda s: [k.name for k in build_definitions([s]).resolve_asset_graph()
                   .get(model_key(s.name, "features")).check_keys]),
    "training.task": (FR, {"training__task": "regression", "training__group_column": None,
                           "promotion__gates": [{"metric": "mae", "op": "<", "threshold": 1}],
                           "promotion__primary_metric": "mae"},
                      lambda s: (request(s).task, request(s).query_columns)),
    "training.feature_builder": (LP, {"training__feature_builder": "engagement"},
                                 lambda s: request(s).feature_builder),
    "training.target": (LP, {"training__target": "nights"}, lambda s: request(s).target),
    "training.group_column": (FR, {"training__group_column": "item_id"},
                              lambda s: request(s).query_columns),
    "training.window_days": (LP, {"training__window_days": 7},
                             lambda s: asset_spec(s, model_key(s.name, "training_set")).description),
    "training.hidden": (LP, {"training__hidden": [8]}, lambda s: request(s).hidden),
    "training.epochs": (LP, {"training__epochs": 2}, lambda s: request(s).epochs),
    "training.batch_size": (LP, {"training__batch_size": 7}, lambda s: request(s).batch_size),
    "training.learning_rate": (LP, {"training__learning_rate": 0.1}, lambda s: request(s).learning_rate),
    "training.weight_decay": (LP, {"training__weight_decay": 0.1}, lambda s: request(s).weight_decay),
    "training.seed": (LP, {"training__seed": 99}, lambda s: request(s).seed),
    "training.valid_fraction": (LP, {"training__valid_fraction": 0.3},
                                lambda s: asset_spec(s, model_key(s.name, "training_set")).description),
    "training.test_fraction": (LP, {"training__test_fraction": 0.3},
                               lambda s: asset_spec(s, model_key(s.name, "training_set")).description),
    "training.shuffle_labels": (LP, {"training__shuffle_labels": True}, lambda s: request(s).shuffle_labels),
    "promotion.gates": (LP, {"promotion__gates": [{"metric": "mae", "op": "<", "threshold": 3}]},
                        gates),
    "promotion.primary_metric": (LP, {"promotion__primary_metric": "rmse"},
                                 gates),
    "promotion.higher_is_better": (LP, {"promotion__higher_is_better": True},
                                   gates),
    "promotion.not_worse_than_champion": (
        LP, {"promotion__not_worse_than_champion": False},
        gates),
    "promotion.champion_tolerance": (LP, {"promotion__champion_tolerance": 3.0},
                                     gates),
    "batch_inference.enabled": (LP, {"batch_inference__enabled": False}, asset_keys),
    "compute.cpu": (LP, {"compute__cpu": "3"}, lambda s: pod(s)["containers"][0]["resources"]),
    "compute.memory": (LP, {"compute__memory": "3Gi"}, lambda s: pod(s)["containers"][0]["resources"]),
    "compute.gpu": (LP, {"compute__gpu": 2}, lambda s: pod(s)["containers"][0]["resources"]),
    "compute.node_selector": (LP, {"compute__node_selector": {"pool": "a100"}},
                              lambda s: pod(s).get("nodeSelector")),
    "compute.tolerations": (LP, {"compute__tolerations": [{"key": "x", "operator": "Exists"}]},
                            lambda s: pod(s).get("tolerations")),
    "compute.image": (LP, {"compute__image": "registry.example/ml:2"},
                      lambda s: pod(s)["containers"][0]["image"]),
    "compute.nodes": (LP, {"compute__nodes": 2}, lambda s: request(s).nodes),
    "compute.labels": (LP, {"compute__labels": {"kueue.x-k8s.io/queue-name": "gpu"}},
                       lambda s: render_training_pod(s)["metadata"]["labels"]),
    "compute.annotations": (LP, {"compute__annotations": {"team": "pricing"}},
                            lambda s: render_training_pod(s)["metadata"]["annotations"]),
    "compute.scheduler_name": (LP, {"compute__scheduler_name": "volcano"},
                               lambda s: pod(s).get("schedulerName")),
    "compute.max_pending": (LP, {"compute__max_pending": 30},
                            lambda s: render_training_pod(s)["metadata"]["annotations"]),
    "compute.processes_per_node": (mutate(LP, compute__gpu=2), {"compute__processes_per_node": 1},
                                   lambda s: request(s).processes),
    "compute.prices": (LP, {"compute__prices": {"gpu_hour": 2.5}}, lambda s: request(s).prices),
    "compute.min_gpu_utilization": (LP, {"compute__min_gpu_utilization": 50},
                                    lambda s: check_description(s, "trained",
                                                                names.GPU_UTILIZATION_CHECK)),
}


def leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel) and name != "columns":
            out += leaf_fields(kind, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_every_field_is_covered() -> None:
    assert sorted(leaf_fields(ModelSpec)) == sorted(CASES)


@pytest.mark.parametrize("field", sorted(CASES))
def test_changing_the_field_changes_what_is_built(field: str) -> None:
    base, changes, observe = CASES[field]
    assert observe(mutate(base, **changes)) != observe(base), f"{field} changed nothing"
