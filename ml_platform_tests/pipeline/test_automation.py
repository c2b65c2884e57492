"""The daily fallback schedule, the freshness checks (a late day shows as stale) and the
run-failure sensor posting to a webhook (a real HTTP server on loopback). Real SQLite Dagster
instances; nothing is faked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.pipeline.automation import alert_on_run_failure
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.notifications import Notifier
from ml_platform.specs import FreshnessWindow, ModelSpec, load_specs


def _spec(**dataset: object) -> ModelSpec:
    base = next(s for s in load_specs() if s.name == "listing_price")
    return base.model_copy(update={"dataset": base.dataset.model_copy(update=dataset)})


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def test_daily_schedule_retrains_on_the_newest_day(instance: dg.DagsterInstance) -> None:
    defs = build_definitions([_spec()])
    schedule = defs.resolve_schedule_def("bookings_daily")
    assert schedule.job_name == "bookings_retrain"
    skipped = schedule(dg.build_schedule_context(instance=instance))
    assert isinstance(skipped, dg.SkipReason)
    for day in ("2026-02-01", "2026-02-02"):
        _landed(instance, dg.AssetKey(["bookings", "raw"]), day, hours_ago=0)
    request = schedule(dg.build_schedule_context(instance=instance))
    assert request.partition_key == "2026-02-02"


def _landed(instance: dg.DagsterInstance, key: dg.AssetKey, day: str, hours_ago: float) -> None:
    """A materialization of `key` for `day`, recorded as of `hours_ago` (the clock is real,
    so an old landing is written with its old timestamp rather than waited for)."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                     job_name=RUNLESS_JOB_NAME,
                     event_specific_data=StepMaterializationData(
                         dg.AssetMaterialization(key, partition=day))),
        run_id=RUNLESS_RUN_ID, timestamp=time.time() - hours_ago * 3600,
    )


def test_late_day_shows_as_stale(instance: dg.DagsterInstance) -> None:
    defs = build_definitions([_spec(freshness=FreshnessWindow(warn_hours=1, fail_hours=2))])
    raw = dg.AssetKey(["bookings", "raw"])
    checks = dg.AssetSelection.checks_for_assets(raw).resolve_checks(defs.resolve_asset_graph())
    assert len(checks) == 1
    job = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*checks))
    run = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("freshness")

    _landed(instance, raw, "2026-02-01", hours_ago=3)  # the last day landed 3 h ago: late
    (stale,) = run.execute_in_process(instance=instance).get_asset_check_evaluations()
    assert not stale.passed
    _landed(instance, raw, "2026-02-02", hours_ago=0)  # the next day lands
    (fresh,) = run.execute_in_process(instance=instance).get_asset_check_evaluations()
    assert fresh.passed


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_failed_run_posts_to_the_webhook(instance: dg.DagsterInstance) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        defs = build_definitions([_spec()])
        job = defs.resolve_job_def("listing_price_pipeline")
        # a training set over no landed day: the run fails, as a real one would
        result = job.execute_in_process(
            instance=instance, raise_on_error=False,
            asset_selection=[dg.AssetKey(["listing_price", "training_set"])],
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_instance=instance, dagster_run=run,
            dagster_event=failure,
        ).for_run_failure()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        alert_on_run_failure(context, notifier=Notifier(webhook_url=url))
        (payload,) = _Hook.received
        assert payload["run_id"] == result.run_id
        assert payload["job"] == "listing_price_pipeline"
        assert "listing_price_pipeline" in payload["text"]
    finally:
        server.shutdown()
