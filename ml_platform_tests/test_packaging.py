"""The package as users install it: a wheel built from the repository and installed into a
folder of its own, imported from outside the source tree, ships the instance configuration of
both profiles and the runtime lock; written into an empty DAGSTER_HOME, the `local` one gives
an instance whose run queue and `training` pool limit are those of the shipped file. Real
`pip wheel`/`pip install` and a real Dagster instance; nothing is faked."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ml_platform_tests.services import REPO

pytestmark = pytest.mark.integration  # builds and installs a wheel

PROBE = """
import json, ml_platform
from ml_platform.compute.code_package import lock_hash
from ml_platform.ops.execute import prepare_dagster_home
from ml_platform.settings import instance_config
import dagster as dg
home = prepare_dagster_home()
instance = dg.DagsterInstance.get()
config = instance.get_concurrency_config()
print(json.dumps({
    "package": ml_platform.__file__, "dagster_home": str(home),
    "run_coordinator": type(instance.run_coordinator).__name__,
    "max_concurrent_runs": config.run_queue_config.max_concurrent_runs,
    "pool_limit": config.pool_config.default_pool_limit,
    "k8s_config": instance_config("k8s"),
    "lock": lock_hash(),
}))
"""


def test_installed_wheel_writes_and_loads_its_instance_config(tmp_path: Path) -> None:
    dist, site, work = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(REPO)],
                   check=True, cwd=work)
    wheel = next(dist.glob("ml_platform-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path),
           "ML_PLATFORM_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=work, env=env, check=True,
                         capture_output=True, text=True).stdout
    found = json.loads(out.strip().splitlines()[-1])

    assert found["package"].startswith(str(site))  # not the source tree
    # the runtime lock ships inside the package: code sync sends its hash to training pods
    assert found["lock"] == hashlib.sha256((REPO / "ml_platform" / "runtime.lock").read_bytes()).hexdigest()
    written = Path(found["dagster_home"]) / "dagster.yaml"
    assert yaml.safe_load(written.read_text())["concurrency"]["pools"]["default_limit"] == 1
    assert found["run_coordinator"] == "QueuedRunCoordinator"
    assert (found["max_concurrent_runs"], found["pool_limit"]) == (4, 1)
    assert yaml.safe_load(found["k8s_config"])["storage"]["postgres"]["postgres_db"]["db_name"] == {
        "env": "DAGSTER_PG_DB"}
