"""`ml-platform costs`: what the trainings used and cost, per model and per day, summed from
what each training recorded on its MLflow run (`names.Usage`, written by the training
entrypoint). A run without that record (trained before it existed, or killed) is not counted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ml_platform import names
from ml_platform.names import Tag, Usage
from ml_platform.specs import ModelSpec
from ml_platform.tracking.mlflow_resource import MlflowTracker

if TYPE_CHECKING:
    from mlflow.entities import Run

_SUMMED = {"wall_seconds": Usage.WALL_SECONDS, "cpu_seconds": Usage.CPU_SECONDS,
           "gpu_seconds": Usage.GPU_SECONDS}
_PAGE = 1000


def _runs(tracker: MlflowTracker, model: str, since: dt.date | None) -> Iterator[Run]:
    """The finished runs of `model` that recorded their usage, oldest first."""
    client = tracker.client()
    experiment = client.get_experiment_by_name(names.experiment(model))
    if experiment is None:  # never trained
        return
    query = f"tags.`{Tag.MODEL}` = '{model}' and attributes.status = 'FINISHED'"
    if since is not None:
        start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
        query += f" and attributes.start_time >= {int(start.timestamp() * 1000)}"
    token = None
    while True:
        page = client.search_runs([experiment.experiment_id], filter_string=query,
                                  order_by=["attributes.start_time ASC"], max_results=_PAGE,
                                  page_token=token)
        yield from (r for r in page if Usage.WALL_SECONDS in r.data.metrics)
        token = page.token
        if not token:
            return


def _empty() -> dict[str, Any]:
    return {"trainings": 0, **dict.fromkeys(_SUMMED, 0.0), "peak_memory_mib": 0.0,
            "gpu_utilization_pct": None, "cost": None, "priced_trainings": 0, "_util": 0.0}


def _add(total: dict[str, Any], run: Run) -> None:
    metrics = run.data.metrics
    total["trainings"] += 1
    for field, key in _SUMMED.items():
        total[field] += metrics.get(key, 0.0)
    total["peak_memory_mib"] = max(total["peak_memory_mib"], metrics.get(Usage.PEAK_MEMORY_MIB, 0.0))
    if Usage.GPU_UTILIZATION in metrics:  # weighted by GPU-seconds when averaged
        total["_util"] += metrics[Usage.GPU_UTILIZATION] * metrics.get(Usage.GPU_SECONDS, 0.0)
    if Usage.COST in metrics:
        total["cost"] = (total["cost"] or 0.0) + metrics[Usage.COST]
        total["priced_trainings"] += 1


def _finish(total: dict[str, Any]) -> dict[str, Any]:
    util = total.pop("_util")
    if total["gpu_seconds"]:
        total["gpu_utilization_pct"] = util / total["gpu_seconds"]
    total["cpu_hours"] = total["cpu_seconds"] / 3600
    total["gpu_hours"] = total["gpu_seconds"] / 3600
    return total


def training_costs(specs: list[ModelSpec], tracker: MlflowTracker,
                   since: dt.date | None = None) -> dict[str, Any]:
    """Per model (of `specs`) and per day (UTC, of the run's start): trainings, wall time,
    CPU- and GPU-seconds (and hours), the largest peak memory of one training process, the
    GPU utilisation (weighted by GPU-seconds; None without GPUs) and the estimated cost (the
    sum over the trainings that had a price table: `priced_trainings`; None when none had)."""
    models: dict[str, Any] = {}
    grand = _empty()
    for spec in specs:
        total, days = _empty(), dict[str, dict[str, Any]]()
        for run in _runs(tracker, spec.name, since):
            day = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC).date().isoformat()
            for bucket in (total, days.setdefault(day, _empty()), grand):
                _add(bucket, run)
        models[spec.name] = {**_finish(total), "days": {d: _finish(v) for d, v in days.items()}}
    return {"since": since.isoformat() if since else None, "models": models,
            "total": _finish(grand)}


def _row(label: str, day: str, t: dict[str, Any]) -> str:
    util = "no GPU" if t["gpu_utilization_pct"] is None else f"{t['gpu_utilization_pct']:.0f}%"
    cost = "-" if t["cost"] is None else f"{t['cost']:.4f}"
    if t["cost"] is not None and t["priced_trainings"] < t["trainings"]:
        cost += f" ({t['priced_trainings']} priced)"
    return (f"{label:20s} {day:10s} {t['trainings']:>9d} {t['wall_seconds']:>9.0f} "
            f"{t['cpu_hours']:>8.4f} {t['gpu_hours']:>8.4f} {t['peak_memory_mib']:>9.0f} "
            f"{util:>8s} {cost:>10s}")


def render_costs(report: dict[str, Any]) -> str:
    """The report as a table: one row per model and day, one per model, one in all."""
    head = (f"{'model':20s} {'day':10s} {'trainings':>9s} {'wall s':>9s} {'CPU h':>8s} "
            f"{'GPU h':>8s} {'peak MiB':>9s} {'GPU util':>8s} {'cost':>10s}")
    lines = [head]
    for model, t in report["models"].items():
        lines += [_row(model, day, d) for day, d in t["days"].items()]
        lines.append(_row(model, "all", t))
    lines.append(_row("all models", "all", report["total"]))
    since = f" since {report['since']}" if report["since"] else ""
    if not report["total"]["trainings"]:
        return f"no training recorded its usage{since}"
    return "\n".join(lines) + ("\ncost: none (no price table: the chart's costs.prices, "
                               "$ML_PLATFORM_PRICES or a spec's compute.prices)"
                               if report["total"]["cost"] is None else "")
