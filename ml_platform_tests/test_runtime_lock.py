"""`ml_platform/runtime.lock` is the closure of the package's runtime requirements over the
installed environment (`scripts/lock_runtime.py`, what `make lock` writes): a dependency added
to pyproject.toml without `make lock` fails here, before an image is built from a stale lock.
Real: the script's own functions, on this environment; nothing is faked."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from ml_platform_tests.services import REPO


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_runtime", REPO / "scripts" / "lock_runtime.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_runtime_lock_is_the_installed_closure() -> None:
    script = _script()
    written = script.LOCK.read_text()
    assert written == script.render(script.closure()), "ml_platform/runtime.lock is stale: run `make lock`"
    pins = [line for line in written.splitlines() if line and not line.startswith("#")]
    assert "torch==2.13.0" in pins and "dagster==1.13.27" in pins  # public versions, exact
    assert not [p for p in pins if p.split("==")[0] in ("pytest", "ruff", "mypy", "moto")]
