"""`python -m ml_platform.tracking.db_upgrade`: MLflow's `mlflow db upgrade` on the database that
`$MLFLOW_BACKEND_STORE_URI` names, so the URI (and the password in it) never appears on a
command line. Idempotent: a schema already current is left as it is, an empty database gets
MLflow's tables. The Helm chart runs it as a pre-upgrade hook (MLflow refuses to start on an
out-of-date schema)."""

from __future__ import annotations

import os
import sys

URI_ENV = "MLFLOW_BACKEND_STORE_URI"


def main() -> int:
    url = os.environ.get(URI_ENV, "")
    if not url:
        print(f"{URI_ENV} is not set: the MLflow database to upgrade", file=sys.stderr)
        return 2
    from mlflow.db import upgrade

    upgrade.main(args=[url], standalone_mode=False)  # the `mlflow db upgrade URL` command
    print("MLflow database schema is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
