"""Which upstream record a stage reads (`ml_platform.pipeline.upstream`), on a real Dagster
instance: its own run's, even when another run materializes the upstream asset mid-run; in a
run that does not materialize the upstream asset, the one newest when the run was created,
whatever lands afterwards; and a clear failure when there is none. The other run is started
from inside the reading step, so the interleaving is certain. Nothing is faked."""


from dataclasses import dataclass
from typing import ClassVar

import dagster as dg
import pytest

from ml_platform.pipeline.upstream import upstream
from ml_platform.records import StageRecord


@dataclass(frozen=True)
class ValueRecord(StageRecord):
    stage: ClassVar[str] = "up"
    value: str


class UpConfig(dg.Config):
    value: str


@dg.asset
def up(config: UpConfig) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=ValueRecord(config.value).to_metadata())


class DownConfig(dg.Config):
    interloper: str = ""
    """Materialize `up` with this value in another run before reading."""


@dg.asset(deps=[up])
def down(context: dg.AssetExecutionContext, config: DownConfig) -> dg.MaterializeResult:
    if config.interloper:
        other = dg.materialize([up], instance=context.instance, run_config={
            "ops": {"up": {"config": {"value": config.interloper}}}})
        assert other.success
    read = upstream(context, up.key, ValueRecord)
    return dg.MaterializeResult(metadata={"read": read.record.value, "pinned": read.pinned,
                                          "from_run": read.run_id})


def _run(instance: dg.DagsterInstance, assets: list[dg.AssetsDefinition | dg.SourceAsset],
         up_value: str | None = None, interloper: str = "") -> dict[str, object]:
    config: dict[str, object] = {"down": {"config": {"interloper": interloper}}}
    if up_value is not None:
        config["up"] = {"config": {"value": up_value}}
    result = dg.materialize(assets, instance=instance, run_config={"ops": config},
                            selection=[a.key for a in assets if isinstance(a, dg.AssetsDefinition)],
                            raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    event = instance.get_latest_materialization_event(down.key)
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()} | {
        "run_id": result.run_id}


def test_a_stage_reads_its_own_runs_upstream_even_if_another_lands_mid_run() -> None:
    with dg.instance_for_test() as instance:
        seen = _run(instance, [up, down], up_value="mine", interloper="theirs")
        assert (seen["read"], seen["pinned"], seen["from_run"]) == ("mine", False, seen["run_id"])
        # the interloper's materialization is there, and newer
        latest = instance.get_latest_materialization_event(up.key)
        assert latest is not None and latest.run_id != seen["run_id"]


def test_without_its_own_upstream_a_run_reads_the_one_pinned_at_its_creation() -> None:
    with dg.instance_for_test() as instance:
        before = dg.materialize([up], instance=instance,
                                run_config={"ops": {"up": {"config": {"value": "before"}}}})
        seen = _run(instance, [up.to_source_asset(), down], interloper="during")
        assert (seen["read"], seen["pinned"], seen["from_run"]) == ("before", True, before.run_id)


def test_no_upstream_materialization_fails_naming_the_asset() -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize([up.to_source_asset(), down], instance=instance,
                                selection=[down.key], raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "up has never been materialized" in failure.step_failure_data.error.message


@pytest.mark.parametrize("missing", ["value"])
def test_a_record_lacking_fields_is_refused(missing: str) -> None:
    with pytest.raises(ValueError, match=f"lacks {missing}"):
        ValueRecord.from_metadata({})
