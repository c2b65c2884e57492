"""The router's supervisor: a model version whose scoring server died is restarted at the same
version, its requests meanwhile answered 503 with `Retry-After`; a restart that fails is tried
again after a back-off. The scoring servers are faked by `sleep` processes (real processes,
really killed): what is under test is the router's bookkeeping, not MLflow's server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ml_platform import names
from ml_platform.serving import router as router_module
from ml_platform.serving.backend import Backend, BackendError
from ml_platform.serving.router import Router


def _sleeper(model: str, version: str, cache: Path) -> Backend:
    process = subprocess.Popen(["sleep", "600"], start_new_session=True)
    return Backend(model, version, "http://127.0.0.1:9", process, cache / f"{model}-{version}.log",
                   example="{}")


async def _until(condition: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _kill_and_restart(router: Router, notes: list[str], sig: signal.Signals,
                            while_down: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Serve v3 of `m`, kill its server with `sig` under the supervisor, call `while_down`,
    wait for the first restart; what the router then says of `m`."""
    await router.switch("m", "3")
    backend = router.models["m"].backend
    assert backend is not None
    supervisor = asyncio.create_task(router.supervise(notes.append, interval=0.05))
    try:
        backend.process.send_signal(sig)
        while_down()
        await _until(lambda: router.models["m"].restarts == 1)
        return router._describe("m") | {"killed_pid": backend.process.pid}
    finally:
        supervisor.cancel()
        await router.stop_all()


def test_a_dead_scoring_server_is_restarted_at_its_version(tmp_path: Path) -> None:
    notes: list[str] = []
    router = Router(["m"], tmp_path, start=_sleeper)

    def while_down() -> None:
        backend = router.models["m"].backend
        assert backend is not None
        backend.process.wait()
        # while it is down, requests hear that it is restarting
        answer = router._serving(SimpleNamespace(match_info={"model": "m"}))  # type: ignore[arg-type]
        assert not isinstance(answer, Backend) and answer.status == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.headers[names.MODEL_VERSION_HEADER] == "3"

    now = asyncio.run(_kill_and_restart(router, notes, signal.SIGKILL, while_down))
    assert (now["version"], now["state"], now["restarts"]) == ("3", "serving", 1)
    assert now["backend_pid"] != now["killed_pid"]
    assert notes[0].startswith("m v3: its scoring server exited with code -9: restarting it")
    assert notes[1] == "m v3: serving again (restart 1)"


def test_a_failed_restart_backs_off_then_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes: list[str] = []
    failures = [BackendError("m v3 failed to load: OSError: disk full")]

    def flaky(model: str, version: str, cache: Path) -> Backend:
        if started and failures:
            raise failures.pop()
        started.append(version)
        return _sleeper(model, version, cache)

    started: list[str] = []
    monkeypatch.setattr(router_module, "RESTART_BACKOFF_S", (2.0, 4.0))
    router = Router(["m"], tmp_path, start=flaky)
    asyncio.run(_kill_and_restart(router, notes, signal.SIGTERM))
    assert [n.split(":")[0] for n in notes] == ["m v3"] * 4
    assert "restart failed, next try in 2s: m v3 failed to load: OSError: disk full" in notes[1]
    assert notes[-1] == "m v3: serving again (restart 1)"
    assert started == ["3", "3"]
