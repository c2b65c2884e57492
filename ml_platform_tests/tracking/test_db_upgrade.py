"""`python -m ml_platform.tracking.db_upgrade` (the chart's pre-upgrade hook for MLflow): on a
database one schema migration behind (MLflow's own alembic downgrade) it brings the schema back
to MLflow's head; run again it changes nothing; without `MLFLOW_BACKEND_STORE_URI` it says so.
A real SQLite database with MLflow's real migrations; nothing is faked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa


def _revision(url: str) -> str:
    with sa.create_engine(url).connect() as conn:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()


def _upgrade(url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_BACKEND_STORE_URI"}
    if url:
        env["MLFLOW_BACKEND_STORE_URI"] = url
    return subprocess.run([sys.executable, "-m", "ml_platform.tracking.db_upgrade"], env=env,
                          capture_output=True, text=True, timeout=300)


def test_an_old_schema_is_migrated_and_a_current_one_left_alone(tmp_path: Path) -> None:
    import mlflow.store.db.utils as db
    from alembic import command

    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    db._initialize_tables(db.create_sqlalchemy_engine_with_retry(url))
    head = _revision(url)
    command.downgrade(db._get_alembic_config(url), "-1")
    assert _revision(url) != head

    done = _upgrade(url)
    assert done.returncode == 0, done.stderr
    assert _revision(url) == head
    again = _upgrade(url)
    assert again.returncode == 0 and _revision(url) == head
    assert url not in done.stdout + done.stderr  # the URI (a password, on PostgreSQL) not echoed


def test_without_the_uri_it_says_which_variable() -> None:
    done = _upgrade(None)
    assert done.returncode == 2 and "MLFLOW_BACKEND_STORE_URI is not set" in done.stderr
