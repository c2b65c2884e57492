"""The local endpoint: a small router on a loopback port in front of one MLflow scoring server
per model, which switches a model to a new version without a failed request.

    POST /models/<model>/invocations   MLflow's scoring protocol, passed through unchanged
    GET  /models/<model>/ping          the model's scoring server's /ping
    GET  /models                       every model, the version it answers with, its state
    GET  /ping                         the router itself
    PUT  /admin/models/<model>         {"version": "2"}: switch (answers when done)

Every answer from a model carries `X-Model-Version`. A switch starts the new version's scoring
server beside the old one, checks that it answers the model's input example, points the route
at it (one assignment: each request reads the route once), waits for the requests still with
the old one, then stops the old one. When the new version does not load or answer, the old one
keeps serving and the switch answers 502 with the reason. A scoring server that dies (a crash,
an OOM kill) is restarted at the same version within seconds; meanwhile its model answers 503
with `Retry-After`. The server is aiohttp (client and server in one library, already required by
MLflow).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from ml_platform import names
from ml_platform.serving import backend as backends
from ml_platform.serving.backend import Backend, BackendError

DRAIN_TIMEOUT_S = 60.0
"""How long a switch waits for the requests still with the old version before stopping it."""
REQUEST_TIMEOUT_S = 60.0
SUPERVISE_INTERVAL_S = 2.0
"""How often the router looks for a scoring server that died (crash, OOM kill, `kill`)."""
RESTART_BACKOFF_S = (5.0, 300.0)
"""After a failed restart, wait this long before the next try, doubling up to the maximum."""


@dataclass
class ModelState:
    """What the router knows of one model."""

    backend: Backend | None = None
    state: str = "no version"
    error: str = ""
    since: str = ""
    switching_to: str = ""
    restarts: int = 0
    next_restart: float = 0.0  # loop time before which no restart is tried (after a failure)
    backoff: float = 0.0


StartFn = Callable[[str, str, Path], Backend]


class Router:
    """Routes per model; `start` makes a checked backend (`backend.start`)."""

    def __init__(self, models: list[str], cache: Path, start: StartFn = backends.start) -> None:
        self.models = {m: ModelState() for m in models}
        self.locks = {m: asyncio.Lock() for m in models}
        self.cache = cache
        self.start = start
        self.session: ClientSession | None = None

    # -- switching --------------------------------------------------------------------------

    async def switch(self, model: str, version: str) -> dict[str, Any]:
        """Serve `version` of `model`; the old version serves until the new one answered its
        input example. Raises BackendError (the old one still serving) otherwise."""
        state = self.models[model]
        async with self.locks[model]:
            old = state.backend
            if old is not None and old.version == version and old.process.poll() is None:
                return self._describe(model) | {"previous_version": version, "changed": False}
            state.switching_to = version
            try:
                new = await asyncio.to_thread(self.start, model, version, self.cache)
            except BackendError as exc:
                state.error = str(exc)
                raise
            except Exception as exc:  # MLflow's own (a version whose files are not there yet)
                state.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise BackendError(f"{model} v{version} could not be started: {state.error}") from exc
            finally:
                state.switching_to = ""
            state.backend, state.error, state.state = new, "", "serving"
            state.since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            if old is not None:
                await self._drain_and_stop(old)
        return self._describe(model) | {"previous_version": old.version if old else "",
                                        "changed": True}

    async def _drain_and_stop(self, old: Backend) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while old.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(old.stop)

    async def supervise(self, note: Callable[[str], None],
                        interval: float = SUPERVISE_INTERVAL_S) -> None:
        """Forever: restart the version of a model whose scoring server died, as a switch to
        the same version (requests meanwhile get 503). A restart that fails is tried again
        after 5 s, then 10 s, ... up to 5 minutes; `note` hears each in one line."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            for model, state in self.models.items():
                b = state.backend
                if (b is None or b.process.poll() is None or self.locks[model].locked()
                        or loop.time() < state.next_restart):
                    continue
                note(f"{model} v{b.version}: its scoring server exited with code "
                     f"{b.process.returncode}: restarting it (log: {b.log_path})")
                try:
                    await self.switch(model, b.version)
                except BackendError as exc:
                    low, high = RESTART_BACKOFF_S
                    state.backoff = min(high, state.backoff * 2 if state.backoff else low)
                    state.next_restart = loop.time() + state.backoff
                    note(f"{model} v{b.version}: restart failed, next try in "
                         f"{state.backoff:.0f}s: {exc}")
                else:
                    state.restarts += 1
                    state.backoff = state.next_restart = 0.0
                    note(f"{model} v{b.version}: serving again (restart {state.restarts})")

    async def stop_all(self) -> None:
        for state in self.models.values():
            if state.backend is not None:
                await asyncio.to_thread(state.backend.stop)
                state.backend = None

    # -- describing -------------------------------------------------------------------------

    def _describe(self, model: str) -> dict[str, Any]:
        state = self.models[model]
        b = state.backend
        alive = b is not None and b.process.poll() is None
        return {
            "model": model,
            "version": b.version if b else "",
            "state": state.state if alive or b is None else "exited",
            "since": state.since,
            "restarts": state.restarts,
            "switching_to": state.switching_to,
            "error": state.error,
            "backend_url": b.url if b else "",
            "backend_pid": b.process.pid if b else None,
        }

    # -- HTTP -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/models", self._models)
        app.router.add_get("/models/{model}/ping", self._model_ping)
        app.router.add_post("/models/{model}/invocations", self._invocations)
        app.router.add_put("/admin/models/{model}", self._admin_switch)
        app.on_startup.append(self._open_session)
        app.on_cleanup.append(self._close)
        return app

    async def _open_session(self, app: web.Application) -> None:
        self.session = ClientSession(timeout=ClientTimeout(total=REQUEST_TIMEOUT_S))

    async def _close(self, app: web.Application) -> None:
        await self.stop_all()
        if self.session is not None:
            await self.session.close()

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="\n")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [self._describe(m) for m in self.models]})

    def _serving(self, request: web.Request) -> Backend | web.Response:
        model = request.match_info["model"]
        if model not in self.models:
            return _error(404, "RESOURCE_DOES_NOT_EXIST",
                          f"no model {model!r} here; served: {', '.join(self.models)}")
        backend = self.models[model].backend
        if backend is None:
            return _error(503, "TEMPORARILY_UNAVAILABLE",
                          f"{model} has no version serving yet: {self.models[model].error or 'none'}")
        if backend.process.poll() is not None:  # died: the supervisor is restarting it
            return _error(503, "TEMPORARILY_UNAVAILABLE",
                          f"{model} v{backend.version} is restarting: its scoring server exited",
                          {names.MODEL_VERSION_HEADER: backend.version, "Retry-After": "5"})
        return backend

    async def _model_ping(self, request: web.Request) -> web.Response:
        backend = self._serving(request)
        if isinstance(backend, web.Response):
            return backend
        return await self._forward(backend, "GET", "/ping", b"", None)

    async def _invocations(self, request: web.Request) -> web.Response:
        backend = self._serving(request)  # read once: the version that answers this request
        if isinstance(backend, web.Response):
            return backend
        body = await request.read()
        return await self._forward(backend, "POST", "/invocations", body,
                                   request.headers.get("Content-Type"))

    async def _forward(self, backend: Backend, method: str, path: str, body: bytes,
                       content_type: str | None) -> web.Response:
        assert self.session is not None
        version = {names.MODEL_VERSION_HEADER: backend.version}
        backend.in_flight += 1
        try:
            headers = {"Content-Type": content_type} if content_type else {}
            async with self.session.request(method, f"{backend.url}{path}", data=body,
                                            headers=headers) as answer:
                payload = await answer.read()
                return web.Response(status=answer.status, body=payload, headers={
                    "Content-Type": answer.headers.get("Content-Type", "application/json"),
                    **version})
        except (ClientError, TimeoutError) as exc:
            return _error(502, "BAD_GATEWAY", f"{backend.model} v{backend.version} did not "
                          f"answer: {exc!r}", version)
        finally:
            backend.in_flight -= 1

    async def _admin_switch(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self.models:
            return _error(404, "RESOURCE_DOES_NOT_EXIST",
                          f"no model {model!r} here; served: {', '.join(self.models)}")
        payload = await request.json()
        version = str(payload.get("version", ""))
        if not version.isdigit():
            return _error(400, "INVALID_PARAMETER_VALUE", f"version {version!r} is not a number")
        try:
            return web.json_response(await self.switch(model, version))
        except BackendError as exc:
            return _error(502, "BAD_GATEWAY", str(exc), {}, self._describe(model))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
           extra: dict[str, Any] | None = None) -> web.Response:
    """An error in MLflow's format (`error_code`, `message`)."""
    return web.json_response({"error_code": code, "message": message, **(extra or {})},
                             status=status, headers=headers or {})


async def serve(router: Router, port: int, initial: dict[str, str], *,
                listening: Callable[[str], None], note: Callable[[str], None],
                stop: asyncio.Event) -> None:
    """Run `router` on 127.0.0.1:`port` until `stop` is set: `listening(url)` once it
    listens, then each model of `initial` is switched to its version and `note` hears how, in
    one line: serving its version, or why not."""
    runner = web.AppRunner(router.app(), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        url = f"http://127.0.0.1:{port}"
        listening(url)
        for model, version in initial.items():
            try:
                await router.switch(model, version)
                note(f"{model} v{version}: {url}/models/{model}/invocations")
            except BackendError as exc:
                note(f"{model}: not serving: {exc}")
        supervisor = asyncio.create_task(router.supervise(note))
        try:
            await stop.wait()
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
