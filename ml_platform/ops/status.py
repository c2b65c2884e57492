"""`ml-platform status`: each dataset's days (due, in flight, rejected and why, done, ignored
files) and the newest day each model was trained on, from the Dagster instance."""

from __future__ import annotations

from typing import Any

from ml_platform.ops.platform import Platform
from ml_platform.pipeline.day_state import day_states
from ml_platform.pipeline.keys import model_key
from ml_platform.pipeline.partitions import landed, missing_days
from ml_platform.records import RecordError, TrainingSetRecord


def platform_status(p: Platform) -> dict[str, Any]:
    datasets: dict[str, Any] = {}
    for ds in p.datasets():
        listing = landed(p.landing, ds)
        states = day_states(p.instance, ds.name, listing.mtimes)
        datasets[ds.name] = {
            "landed": len(states),
            "missing": missing_days(list(listing.days)),
            "done": sum(s.state == "done" for s in states),
            "due": {s.day: s.reason for s in states if s.state == "due"},
            "in_flight": {s.day: s.run_id for s in states if s.state == "in_flight"},
            "rejected": {s.day: s.reason for s in states if s.state == "rejected"},
            "ignored": [str(i) for i in listing.ignored],
        }
    models = {}
    for spec in p.specs:
        event = p.instance.get_latest_materialization_event(model_key(spec.name, "training_set"))
        newest = ""
        if event is not None and event.asset_materialization is not None:
            try:
                days = TrainingSetRecord.from_metadata(event.asset_materialization.metadata).partitions
                newest = max(days, default="")
            except RecordError:
                newest = ""
        models[spec.name] = {"dataset": spec.dataset.name, "newest_trained_day": newest}
    return {"datasets": datasets, "models": models}


def render_status(status: dict[str, Any]) -> str:
    lines = []
    for dataset, d in status["datasets"].items():
        lines.append(f"{dataset}: {d['landed']} day(s) landed, {d['done']} done, {len(d['due'])} due, "
                     f"{len(d['in_flight'])} in flight, {len(d['rejected'])} rejected, "
                     f"{len(d['missing'])} missing")
        lines += [f"  missing   {day}  never landed" for day in d["missing"]]
        lines += [f"  due       {day}  {why}" for day, why in d["due"].items()]
        lines += [f"  in flight {day}  run {run[:8]}" for day, run in d["in_flight"].items()]
        lines += [f"  rejected  {day}  {why}" for day, why in d["rejected"].items()]
        lines += [f"  {entry}" for entry in d["ignored"]]
    for model, m in status["models"].items():
        lines.append(f"{model}: trained on days up to {m['newest_trained_day'] or 'none yet'}")
    return "\n".join(lines)
