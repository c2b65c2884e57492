"""The chart renders the same Dagster instance sections (storage, run queue, pools, telemetry)
as the `k8s` instance configuration shipped in the package, which the CLI writes into
DAGSTER_HOME: what a command run from a laptop and the daemon in the cluster use agree.
Rendered with a real `helm`; nothing is faked."""

from __future__ import annotations

import yaml

from ml_platform.settings import instance_config
from ml_platform_tests.kube import config_map, render

SHARED = ("telemetry", "storage", "run_coordinator", "concurrency")


def test_chart_and_package_instance_configs_agree() -> None:
    chart = yaml.safe_load(config_map(render("default"), "-instance")["dagster.yaml"])
    package = yaml.safe_load(instance_config("k8s"))
    assert {k: chart[k] for k in SHARED} == {k: package[k] for k in SHARED}


def test_local_profile_config_queues_runs_and_limits_the_training_pool() -> None:
    local = yaml.safe_load(instance_config("local"))
    assert local["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert local["concurrency"]["pools"]["default_limit"] == 1
    assert "storage" not in local  # SQLite under DAGSTER_HOME
