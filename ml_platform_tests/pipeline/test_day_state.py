"""The state of each landed day (`ml_platform.pipeline.day_state`) read from a real Dagster
instance: runs that succeeded or failed, days rejected with a reason, days landed again, days
of a run not yet started; and the sensor's retry schedule for days whose run failed
(`plan_retries`).
Stand-in assets with the dataset's keys make the runs; nothing is faked."""

import time

import dagster as dg

from ml_platform.names import RunTag
from ml_platform.pipeline.day_state import day_states
from ml_platform.pipeline.sensors import RETRY_FIRST_DELAY_S, plan_retries

PARTS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(key=["ds", "raw"], partitions_def=PARTS)
def raw() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(key=["ds", "validated"], partitions_def=PARTS, deps=[raw])
def validated(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    bad = {d: ["schema: wrong dtype"] for d in context.partition_keys if d.endswith("03")}
    return dg.MaterializeResult(metadata={"rejections": bad})


@dg.asset(partitions_def=PARTS, deps=[validated])
def training(context: dg.AssetExecutionContext) -> None:
    if context.partition_key.endswith("02"):
        raise RuntimeError("the tracking server went away")


def test_states_follow_the_runs_that_ingested_each_day() -> None:
    with dg.instance_for_test() as instance:
        days = [f"2026-01-0{i}" for i in range(1, 6)]
        for day in days[:4]:
            dg.materialize([raw, validated, training], instance=instance, partition_key=day,
                           raise_on_error=False)
        landed = {day: 0.0 for day in days} | {"2026-01-04": time.time() + 60}
        states = {s.day: s for s in day_states(instance, "ds", landed)}
        assert states["2026-01-01"].state == "done"
        assert states["2026-01-02"].state == "due" and "did not finish" in states["2026-01-02"].reason
        assert (states["2026-01-03"].state, states["2026-01-03"].reason) == (
            "rejected", "schema: wrong dtype")
        assert (states["2026-01-04"].state, states["2026-01-04"].reason) == (
            "due", "landed again since it was ingested")
        assert (states["2026-01-05"].state, states["2026-01-05"].run_id) == ("due", "")


def test_days_of_a_retrain_run_not_started_are_in_flight_before_they_are_copied() -> None:
    with dg.instance_for_test() as instance:
        job = dg.Definitions(assets=[raw], jobs=[dg.define_asset_job("ds_retrain", [raw])]
                             ).resolve_job_def("ds_retrain")
        run = instance.create_run_for_job(job, status=dg.DagsterRunStatus.NOT_STARTED, tags={
            RunTag.PARTITION_RANGE_START: "2026-01-02", RunTag.PARTITION_RANGE_END: "2026-01-03"})
        landed = {f"2026-01-0{i}": 0.0 for i in range(1, 5)}
        states = {s.day: (s.state, s.run_id) for s in day_states(instance, "ds", landed)}
        assert states == {"2026-01-01": ("due", ""), "2026-01-02": ("in_flight", run.run_id),
                          "2026-01-03": ("in_flight", run.run_id), "2026-01-04": ("due", "")}


def test_failed_days_are_retried_with_a_doubling_delay() -> None:
    now, cap = 1000.0, 3600.0
    due, state = plan_retries({}, ["d"], now, cap)
    assert due == ["d"] and state["d"] == [1, now + RETRY_FIRST_DELAY_S]
    due, state = plan_retries(state, ["d"], now + 1, cap)
    assert due == [] and state["d"] == [1, now + RETRY_FIRST_DELAY_S]
    due, state = plan_retries(state, ["d"], now + RETRY_FIRST_DELAY_S, cap)
    assert due == ["d"] and state["d"][1] == now + RETRY_FIRST_DELAY_S + 2 * RETRY_FIRST_DELAY_S
    attempts = [20, 0.0]
    due, state = plan_retries({"d": attempts}, ["d"], now, cap)
    assert due == ["d"] and state["d"] == [21, now + cap]  # at most `cap` apart
    assert plan_retries(state, [], now, cap) == ([], {})  # done or rejected: forgotten
