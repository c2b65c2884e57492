"""What a training used and cost (`ml_platform.compute.usage`): the sampler without NVML (the
import made to fail) gives the `no GPU` fields; with a fake NVML module (fixed utilisation and
memory, two GPUs) it fills the GPU fields; `CUDA_VISIBLE_DEVICES` picks the GPUs counted;
several processes combine into one training; Kubernetes quantities; the cost from a price
table, the spec's table over the cluster's (`$ML_PLATFORM_PRICES`), none by default (absent,
not 0); bad cluster tables are one-line setting errors; prices and the utilisation threshold
leave the training code version alone. NVML is faked where said; nothing else is."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from ml_platform import settings
from ml_platform.compute.request import TrainingRequest
from ml_platform.compute.usage import (
    ProcessUsage,
    Requests,
    UsageSampler,
    combine,
    estimate_cost,
    quantity,
    usage_record,
)
from ml_platform.names import Usage
from ml_platform.pipeline.code_version import training_code_version
from ml_platform.specs import Prices, load_specs

LP = next(s for s in load_specs() if s.name == "listing_price")


class FakeNvml:
    """A stand-in for pynvml: `count` GPUs at `util` % busy with `used_mib` MiB in use."""

    def __init__(self, count: int = 2, util: float = 42.0, used_mib: float = 1500.0) -> None:
        self.count, self.util, self.used = count, util, used_mib * 2**20
        self.initialised = self.shut_down = False

    def nvmlInit(self) -> None:
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return f"Fake GPU {handle}".encode()

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=self.util, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=self.used + handle * 2**20, total=80 * 2**30)


def _burn_cpu() -> None:
    sum(i * i for i in range(200_000))


def test_without_nvml_the_gpu_fields_say_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    sampler = UsageSampler().start()
    _burn_cpu()
    used = sampler.stop()
    assert used.gpu_count == 0 and used.gpu_seconds == 0
    assert used.gpu_utilization_pct is None and used.gpu_peak_memory_mib is None
    assert used.wall_seconds > 0 and used.cpu_seconds > 0 and used.peak_memory_mib > 10
    summary = usage_record(used, Requests(cpu="2", memory="4Gi"), None).summary()
    assert summary[Usage.GPU] == Usage.NO_GPU
    assert summary[Usage.GPU_UTILIZATION] == Usage.NO_GPU
    assert summary[Usage.GPU_PEAK_MEMORY_MIB] == Usage.NO_GPU
    assert summary[Usage.GPU_COUNT] == 0 and summary[Usage.GPU_SECONDS] == 0


def test_nvml_that_finds_no_driver_is_no_gpu() -> None:
    class NoDriver(FakeNvml):
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    used = UsageSampler(nvml=NoDriver()).start().stop()
    assert used.gpu_count == 0 and used.gpu_utilization_pct is None


def test_a_fake_nvml_fills_the_gpu_fields() -> None:
    """NVML is faked: two GPUs at a fixed 42 % utilisation, 1500 and 1501 MiB in use."""
    nvml = FakeNvml()
    sampler = UsageSampler(nvml=nvml, interval=0.01, env={}).start()
    _burn_cpu()
    used = sampler.stop()
    assert nvml.initialised and nvml.shut_down
    assert used.gpu_names == ("Fake GPU 0", "Fake GPU 1")
    assert used.gpu_utilization_pct == pytest.approx(42.0)
    assert used.gpu_peak_memory_mib == pytest.approx(1501.0)
    assert used.gpu_seconds == pytest.approx(2 * used.wall_seconds)
    record = usage_record(used, Requests(gpu=2), None)
    assert record.metrics[Usage.GPU_UTILIZATION] == pytest.approx(42.0)
    assert record.tags[Usage.GPU] == "Fake GPU 0, Fake GPU 1"
    assert sampler.stop() is used  # stopped once


@pytest.mark.parametrize(("visible", "names"), [
    ("1", ("Fake GPU 1",)), ("", ()), ("0,7,1", ("Fake GPU 0",)),
    ("GPU-5c3b8f2e", ("Fake GPU 0", "Fake GPU 1")),
])
def test_cuda_visible_devices_picks_the_gpus_counted(visible: str, names: tuple[str, ...]) -> None:
    used = UsageSampler(nvml=FakeNvml(), env={"CUDA_VISIBLE_DEVICES": visible}).start().stop()
    assert used.gpu_names == names


def test_processes_combine_into_one_training() -> None:
    rank0 = ProcessUsage(wall_seconds=100, cpu_seconds=150, peak_memory_mib=900,
                         gpu_names=("A",), gpu_seconds=100, gpu_utilization_pct=80,
                         gpu_peak_memory_mib=5000)
    other_node = ProcessUsage(wall_seconds=99, cpu_seconds=140, peak_memory_mib=1000,
                              gpu_names=("B", "C"), gpu_seconds=300, gpu_utilization_pct=40,
                              gpu_peak_memory_mib=7000)
    same_node = ProcessUsage(wall_seconds=99, cpu_seconds=10, peak_memory_mib=500)
    both = combine([rank0, other_node, same_node])
    assert both.wall_seconds == 100 and both.cpu_seconds == 300 and both.peak_memory_mib == 1000
    assert both.processes == 3 and both.gpu_count == 3 and both.gpu_seconds == 400
    assert both.gpu_utilization_pct == pytest.approx((80 * 100 + 40 * 300) / 400)
    assert both.gpu_peak_memory_mib == 7000
    cpu_only = combine([same_node, same_node])
    assert cpu_only.gpu_utilization_pct is None and cpu_only.gpu_peak_memory_mib is None


@pytest.mark.parametrize(("text", "value"), [
    ("2", 2), ("500m", 0.5), ("4Gi", 4 * 2**30), ("1.5G", 1.5e9), ("512Mi", 512 * 2**20),
    ("1e3", 1000),
])
def test_kubernetes_quantities(text: str, value: float) -> None:
    assert quantity(text) == pytest.approx(value)


def test_a_bad_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity("4 gigs")


def test_cost_from_a_price_table() -> None:
    # one hour on 2 GPUs, 2 pods of 4 cores and 8 GiB each
    used = ProcessUsage(wall_seconds=3600, cpu_seconds=1000, peak_memory_mib=100,
                        gpu_names=("A", "B"), gpu_seconds=7200, gpu_utilization_pct=50)
    cost = estimate_cost(used, Requests(cpu="4", memory="8Gi", gpu=1, nodes=2),
                         {"gpu_hour": 2.5, "cpu_hour": 0.04, "memory_gib_hour": 0.005})
    assert cost[Usage.COST_GPU] == pytest.approx(5.0)
    assert cost[Usage.COST_CPU] == pytest.approx(0.32)
    assert cost[Usage.COST_MEMORY] == pytest.approx(0.08)
    assert cost[Usage.COST] == pytest.approx(5.4)
    # an entry left out costs nothing; a request not known costs nothing
    assert estimate_cost(used, Requests(), {"cpu_hour": 1.0})[Usage.COST] == 0


def test_no_price_table_records_no_cost_at_all() -> None:
    used = ProcessUsage(wall_seconds=10, cpu_seconds=5, peak_memory_mib=100)
    record = usage_record(used, Requests(cpu="1", memory="2Gi"), {})
    assert not any(k.startswith(Usage.COST) for k in record.metrics)  # absent, not 0
    assert record.tags[Usage.PRICES] == Usage.NO_PRICES
    priced = usage_record(used, Requests(cpu="1", memory="2Gi"), {"cpu_hour": 3.6})
    assert priced.metrics[Usage.COST] == pytest.approx(0.01)
    assert priced.tags[Usage.REQUEST_CPU] == "1" and priced.tags[Usage.REQUEST_MEMORY] == "2Gi"


def _request(spec: Any) -> TrainingRequest:
    return TrainingRequest.for_spec(spec, training_set_uri="u", mlflow_run_id="r", checkpoint_dir="c")


def test_the_spec_table_overrides_the_cluster_one_and_none_is_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.PRICES_ENV, raising=False)
    assert _request(LP).prices == {}
    monkeypatch.setenv(settings.PRICES_ENV, '{"gpu_hour": 3, "cpu_hour": 0.05}')
    request = _request(LP)
    assert request.prices == {"gpu_hour": 3.0, "cpu_hour": 0.05, "memory_gib_hour": 0.0}
    assert (request.cpu, request.memory, request.gpu) == ("2", "4Gi", 1)
    own = LP.model_copy(update={"compute": LP.compute.model_copy(
        update={"prices": Prices(gpu_hour=1.25)})})
    assert _request(own).prices == {"gpu_hour": 1.25, "cpu_hour": 0.0, "memory_gib_hour": 0.0}


@pytest.mark.parametrize(("value", "error"), [
    ("[1]", "is not a JSON object"), ("{nope", "is not a JSON object"),
    ('{"gpu": 1}', "unknown price(s) ['gpu']"), ('{"cpu_hour": -1}', "cpu_hour=-1 is not a price"),
    ('{"cpu_hour": "1"}', "is not a price"),
])
def test_a_bad_cluster_price_table_is_a_setting_error(monkeypatch: pytest.MonkeyPatch, value: str,
                                                      error: str) -> None:
    monkeypatch.setenv(settings.PRICES_ENV, value)
    with pytest.raises(settings.SettingError, match=settings.PRICES_ENV) as caught:
        settings.prices()
    assert error in str(caught.value) and "\n" not in str(caught.value)


def test_prices_and_threshold_leave_the_code_version_alone() -> None:
    changed = LP.model_copy(update={"compute": LP.compute.model_copy(
        update={"prices": Prices(gpu_hour=9), "min_gpu_utilization": 80})})
    assert training_code_version(changed) == training_code_version(LP)
    hungrier = LP.model_copy(update={"compute": LP.compute.model_copy(update={"cpu": "3"})})
    assert training_code_version(hungrier) != training_code_version(LP)
