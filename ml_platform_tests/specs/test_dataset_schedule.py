"""Unit tests of the spec fields issue 11 added: `dataset.schedule_cron` (engagement ships the
seed's `0 2 * * *`, bookings none; a malformed cron fails naming the file, the field and the
fault), `ModelSpec.query_columns` (the date and `training.group_column` for ranking, none for
regression) and a group column that must be a dataset column. Specs are edited in memory or
written to a temporary directory; nothing is faked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_platform.specs import check_cron, load_spec
from ml_platform.specs.model_spec import SPEC_DIR


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((SPEC_DIR / f"{name}.yaml").read_text())


def test_shipped_schedules_and_query_columns() -> None:
    ranking = load_spec(SPEC_DIR / "feed_ranking.yaml")
    price = load_spec(SPEC_DIR / "listing_price.yaml")
    assert ranking.dataset.schedule_cron == "0 2 * * *"
    assert price.dataset.schedule_cron is None  # the platform's daily fallback
    assert ranking.query_columns == ("event_date", "user_id")
    assert price.query_columns == ()


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/15 0-6 1,15 * 1-5", "30 23 31 12 7"])
def test_valid_crons(cron: str) -> None:
    check_cron(cron)


@pytest.mark.parametrize(("cron", "fault"), [
    ("0 2 * *", "needs 5 fields"),
    ("60 2 * * *", "'60' is not in 0-59 in the minute field"),
    ("0 24 * * *", "'24' is not in 0-23 in the hour field"),
    ("0 2 0 * *", "day of month field"),
    ("0 2 * * mon", "day of week field"),
    ("5-1 * * * *", "empty range"),
    ("*/0 * * * *", "bad step"),
])
def test_bad_cron_fails_naming_the_file_field_and_fault(tmp_path: Path, cron: str,
                                                        fault: str) -> None:
    raw = _raw("feed_ranking")
    raw["dataset"]["schedule_cron"] = cron
    path = tmp_path / "feed_ranking.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message and "dataset.schedule_cron" in message and fault in message


def test_group_column_must_be_a_dataset_column(tmp_path: Path) -> None:
    raw = _raw("feed_ranking")
    raw["training"]["group_column"] = "session_id"
    path = tmp_path / "feed_ranking.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"training\.group_column: column 'session_id' is not a declared"):
        load_spec(path)
