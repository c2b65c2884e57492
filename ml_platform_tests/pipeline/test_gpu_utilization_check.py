"""The `gpu_utilization` check on `trained` (WARN), judged from a training's summary: under the
spec's threshold it fails naming the usual causes (a data-loading bottleneck, an oversized
request); at or over it, on a CPU training (`no GPU`) and on a reused run it passes. The summaries
are written by hand (what the entrypoint reports); nothing is trained."""

from __future__ import annotations

import dagster as dg

from ml_platform import names
from ml_platform.names import Usage
from ml_platform.pipeline.model.trained import gpu_utilization_check


def test_low_utilisation_warns_naming_the_usual_causes() -> None:
    result = gpu_utilization_check({Usage.GPU_UTILIZATION: 12.5, Usage.GPU_COUNT: 2}, 30)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.check_name == names.GPU_UTILIZATION_CHECK
    text = result.description or ""
    assert "12.5%" in text and "2 GPU(s)" in text and "under 30%" in text
    assert "data-loading bottleneck" in text and "oversized request" in text


def test_busy_gpus_pass() -> None:
    result = gpu_utilization_check({Usage.GPU_UTILIZATION: 30.0, Usage.GPU_COUNT: 1}, 30)
    assert result.passed and "30.0%" in (result.description or "")


def test_a_cpu_training_passes_saying_no_gpu() -> None:
    result = gpu_utilization_check({Usage.GPU_UTILIZATION: Usage.NO_GPU, Usage.GPU_COUNT: 0}, 30)
    assert result.passed and Usage.NO_GPU in (result.description or "")


def test_a_reused_run_passes_saying_nothing_trained() -> None:
    result = gpu_utilization_check({}, 30, reused_run="abc123")
    assert result.passed and "abc123" in (result.description or "")
