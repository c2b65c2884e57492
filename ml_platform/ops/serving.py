"""`ml-platform serve` and `ml-platform serving status`: the local endpoint of every model."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from ml_platform import names, settings
from ml_platform.ops.errors import PlatformError, UsageError
from ml_platform.ops.platform import Platform
from ml_platform.serving.endpoint import remove_endpoint, running_endpoint, write_endpoint
from ml_platform.serving.router import Router, serve


def _recorded(p: Platform, model: str) -> dict[str, Any]:
    """The serving manifest of `model` (what the `serving` asset last recorded), or {}."""
    key = names.serving_lake_key(model)
    return p.lake.read_json(key) if p.lake.exists(key) else {}


def _production(p: Platform, model: str) -> str | None:
    return p.tracker.alias_version(model, names.PRODUCTION_ALIAS) if p.tracker.registered(
        model) else None


def initial_versions(p: Platform) -> dict[str, str]:
    """What `serve` starts with, per model: the version the `serving` asset recorded, else
    the production version; models with neither are left out."""
    versions = {}
    for spec in p.specs:
        version = _recorded(p, spec.name).get("version") or _production(p, spec.name)
        if version:
            versions[spec.name] = str(version)
    return versions


def run_serve(p: Platform, port: int, note: Callable[[str], None]) -> None:
    """Serve every model of `p` on 127.0.0.1:`port` until SIGINT or SIGTERM."""
    if (running := running_endpoint()) is not None:
        raise UsageError(f"this home is already served at {running.url} (pid {running.pid}): "
                         f"stop it first, or use another {settings.HOME_ENV}")
    router = Router([s.name for s in p.specs], settings.serving_dir() / "models")
    initial = initial_versions(p)
    for spec in p.specs:
        if spec.name not in initial:
            note(f"{spec.name}: no production version yet; served once one is promoted")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        written = []

        def listening(url: str) -> None:
            written.append(write_endpoint(url))
            note(f"endpoint: {url}/models/<model>/invocations (loading {len(initial)} model(s))")

        try:
            await serve(router, port, initial, listening=listening, note=note, stop=stop)
        finally:
            for endpoint in written:
                remove_endpoint(endpoint)

    try:
        asyncio.run(main())
    except OSError as exc:
        raise PlatformError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}): "
                            "choose another --port") from exc


def serving_status(p: Platform) -> dict[str, Any]:
    """Each model: its endpoint URL, the version it answers with, production's version and
    the version the `serving` asset recorded."""
    endpoint = running_endpoint()
    live = {m["model"]: m for m in endpoint.models()} if endpoint else {}
    models = []
    for spec in p.specs:
        now = live.get(spec.name, {})
        models.append({
            "model": spec.name,
            "url": endpoint.invocations_url(spec.name) if endpoint else None,
            "version": now.get("version") or None,
            "state": now.get("state", "not running"),
            "error": now.get("error", ""),
            "restarts": now.get("restarts", 0),
            "production": _production(p, spec.name),
            "recorded": _recorded(p, spec.name).get("version"),
        })
    return {"endpoint": endpoint.url if endpoint else None,
            "pid": endpoint.pid if endpoint else None, "models": models}


def render_serving_status(status: dict[str, Any]) -> str:
    if status["endpoint"] is None:
        lines = ["endpoint: not running (start it with `ml-platform serve`)"]
    else:
        lines = [f"endpoint: {status['endpoint']} (pid {status['pid']})"]
    for m in status["models"]:
        answering = f"v{m['version']}" if m["version"] else m["state"]
        lines.append(f"  {m['model']:16s} {answering:12s} production v{m['production'] or '-'}  "
                     f"{m['url'] or ''}")
        if m["error"]:
            lines.append(f"    last switch failed: {m['error']}")
    return "\n".join(lines)
