"""`ml_platform.tracking.home_server`: one MLflow server per state home. Unit tests of the
bookkeeping (process identity, leases, free ports, the external server of
MLFLOW_TRACKING_URI), then real `mlflow server` processes: an unrelated server answering on
the requested port is never written to (another port is used, and the note says so); two
users of one home share one server and the first to finish does not stop it; a command
killed with SIGKILL leaves no server process behind (its watchdog stops it). Nothing is faked:
the commands of the last tests are real child processes. Also: a server orphaned by a
SIGKILLed watchdog is stopped by the next command on its home."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ml_platform.tracking.home_server import (
    HomeFiles,
    HomeServer,
    Lease,
    ServerRecord,
    ServerUnavailable,
    alive,
    home_server,
    port_is_free,
    process_start,
    served_home_id,
    wait_for_home_server,
)
from ml_platform.tracking.server import free_port, is_healthy, start_mlflow_server
from ml_platform_tests.services import env


def _group_members(pgid: int) -> list[int]:
    """Living (non-zombie) processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _nothing_listens(port: int) -> bool:
    """No socket listens on 127.0.0.1:`port` (connections of the dead server may linger in
    the kernel's TIME_WAIT; they listen for nothing)."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _sockets(port: int) -> str:
    """What holds `port`, for a failure message."""
    found = subprocess.run(["ss", "-tanp"], capture_output=True, text=True).stdout
    return "\n".join(line for line in found.splitlines() if f":{port}" in line)


def _until(condition: object, timeout: float = 60.0) -> bool:
    """Poll `condition()` until true or `timeout` (a deadline for slow machines, not a
    measured time: the assertion is on the outcome)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return bool(condition())  # type: ignore[operator]


@pytest.fixture(autouse=True)
def _no_tracking_uri() -> object:
    with env(MLFLOW_TRACKING_URI=None):
        yield


# -- bookkeeping -----------------------------------------------------------------------------

def test_process_identity() -> None:
    me = process_start(os.getpid())
    assert me is not None and alive(os.getpid(), me)
    assert not alive(os.getpid(), me + "1")  # a reused pid has another start time
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start(child.pid) is None


def test_leases_of_dead_processes_are_pruned(tmp_path: Path) -> None:
    files = HomeFiles.of(tmp_path)
    mine = Lease.mine()
    assert Lease.parse(mine.name) == mine
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start(child.pid) or "0"
    child.wait()
    files.add_lease(mine)
    files.add_lease(Lease(child.pid, start, "gone"))
    (files.leases / "not-a-lease").write_text("")
    assert files.live_leases() == [mine]
    assert sorted(p.name for p in files.leases.iterdir()) == [mine.name]
    files.drop_lease(mine)
    assert files.live_leases() == []


def test_home_id_is_kept(tmp_path: Path) -> None:
    files = HomeFiles.of(tmp_path)
    assert files.home_id() == files.home_id() != HomeFiles.of(tmp_path / "other").home_id()


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, b"0123abcd", "0123abcd"),  # a server serving some home's identity
    (404, b"not found", None),  # an MLflow server of another program: no identity
    (200, b"<html>hello</html>", "<html>hello</html>"),  # another program: not ours either
    (503, b"starting", OSError),  # not ready: ask again
])
def test_served_home_id(status: int, body: bytes, expected: object) -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if expected is OSError:
            with pytest.raises(OSError):
                served_home_id(url)
        else:
            assert served_home_id(url) == expected
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(OSError):  # nothing answers any more
        served_home_id(url)


def test_wait_ready_refuses_a_server_of_another_home(tmp_path: Path) -> None:
    """The recorded URL answers, but with another identity: never used, said at once."""
    import http.server
    import threading

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"other")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    files = HomeFiles.of(tmp_path)
    home_id = files.home_id()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    files.write_record(ServerRecord(url=url, port=server.server_address[1],
                                    watchdog_pid=os.getpid(),
                                    watchdog_start=process_start(os.getpid()) or "0",
                                    backend_store_uri=files.backend_store_uri, home_id=home_id,
                                    started_at=time.time()))
    try:
        with pytest.raises(ServerUnavailable, match="answers, but not as this home's"):
            HomeServer(url=url, home_id=home_id, files=files).wait_ready(timeout=5)
        with pytest.raises(ServerUnavailable):
            wait_for_home_server(url, tmp_path)
    finally:
        server.shutdown()
        server.server_close()


def test_port_is_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_is_free(s.getsockname()[1])
    assert port_is_free(free_port())


def test_tracking_uri_is_used_as_it_is(tmp_path: Path) -> None:
    with env(MLFLOW_TRACKING_URI="http://tracking.example:5000/"), \
            home_server(tmp_path, port=free_port()) as server:
        assert (server.url, server.external, server.started) == (
            "http://tracking.example:5000", True, False)
        server.wait_ready()  # nothing to wait for: not ours
    assert not (tmp_path / "mlflow").exists()
    assert not wait_for_home_server("http://tracking.example:5000", tmp_path)


# -- real servers ----------------------------------------------------------------------------

@pytest.mark.integration
def test_unrelated_server_on_the_port_is_never_used(tmp_path: Path) -> None:
    port = free_port()
    unrelated = start_mlflow_server(store=tmp_path / "unrelated", port=port)
    try:
        unrelated.wait_ready(timeout=180)
        with home_server(tmp_path / "home", port=port) as server:
            assert server.url != unrelated.url and server.started
            assert server.note is not None and f"port {port} is in use by another server" in \
                server.note and server.url in server.note
            MlflowClient(server.url).create_experiment("fresh-home")
            assert wait_for_home_server(server.url, tmp_path / "home")
        names = [e.name for e in MlflowClient(unrelated.url).search_experiments()]
        assert names == ["Default"]  # nothing of the fresh home reached it
        assert served_home_id(unrelated.url) is None
        assert is_healthy(unrelated.url)  # and it was not stopped either
    finally:
        unrelated.stop(graceful=False)


@pytest.mark.integration
def test_two_users_share_one_server_and_the_first_out_does_not_stop_it(tmp_path: Path) -> None:
    port = free_port()
    files = HomeFiles.of(tmp_path)
    with home_server(tmp_path, port=port) as first:
        assert first.started and first.note is None and first.url.endswith(f":{port}")
        with home_server(tmp_path, port=port) as second:
            assert second.url == first.url and not second.started
            assert len(files.live_leases()) == 2
            experiment = MlflowClient(first.url).create_experiment("shared")
            record = files.read_record()
            assert record is not None
        # `second` finished first: the server stays for `first`.
        assert served_home_id(first.url) == files.home_id()
        assert MlflowClient(first.url).get_experiment(experiment).name == "shared"
    # The last one out stopped it, with its watchdog and uvicorn.
    assert files.read_record() is None and files.live_leases() == []
    assert port_is_free(port)
    assert _until(lambda: not _group_members(record.watchdog_pid))


_HOLDER = """
import json, sys, time
from pathlib import Path
from ml_platform.tracking.home_server import home_server
with home_server(Path(sys.argv[1]), port=int(sys.argv[2])) as server:
    print(json.dumps({"url": server.url, "started": server.started}), flush=True)
    time.sleep(600)
"""


@pytest.mark.integration
def test_a_sigkilled_owner_leaves_no_server(tmp_path: Path) -> None:
    """Two commands on one home, each a real process; both are killed with SIGKILL, the
    first while the second still uses the server."""
    port = free_port()
    files = HomeFiles.of(tmp_path)
    holders = [subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path), str(port)],
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        seen = [json.loads(h.stdout.readline()) for h in holders]  # type: ignore[union-attr]
        assert {s["url"] for s in seen} == {f"http://127.0.0.1:{port}"}
        assert sorted(s["started"] for s in seen) == [False, True]
        record = files.read_record()
        assert record is not None and len(_group_members(record.watchdog_pid)) >= 2

        holders[0].send_signal(signal.SIGKILL)
        holders[0].wait()
        # The watchdog saw the dead lease (it prunes it) and kept the server for the other.
        assert _until(lambda: len(list(files.leases.iterdir())) == 1)
        assert served_home_id(record.url) == files.home_id()

        holders[1].send_signal(signal.SIGKILL)
        holders[1].wait()
        assert _until(lambda: not _group_members(record.watchdog_pid))
        assert files.read_record() is None
        assert _until(lambda: _nothing_listens(port)), _sockets(port)
    finally:
        for h in holders:
            if h.poll() is None:
                h.kill()
                h.wait()


@pytest.mark.integration
def test_a_server_orphaned_by_its_watchdog_is_stopped_by_the_next_command(
        tmp_path: Path) -> None:
    port = free_port()
    files = HomeFiles.of(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path), str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        json.loads(holder.stdout.readline())  # type: ignore[union-attr]
        record = files.read_record()
        assert record is not None
        os.kill(record.watchdog_pid, signal.SIGKILL)  # the one case the watchdog cannot cover
        holder.kill()
        holder.wait()
        assert _until(lambda: process_start(record.watchdog_pid) is None)
        assert served_home_id(record.url) == files.home_id()  # orphaned, still serving
        with home_server(tmp_path, port=port) as server:
            assert server.started and server.note is None and server.url == record.url
            assert files.read_record() != record
        assert not _group_members(record.watchdog_pid)
        assert port_is_free(port)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
