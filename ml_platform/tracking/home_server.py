"""One MLflow server per state home, shared by every command on it, outliving none of them.

    with home_server(settings.home(), port=5000) as server:
        if server.note:
            print(server.note, file=sys.stderr)  # e.g. "port 5000 is another server's: ..."
        server.wait_ready()
        ... MlflowTracker(tracking_uri=server.url) ...

Files under `<home>/mlflow/` (beside the server's `mlflow.db` and `artifacts/`):

- `server.json`: the server this home started: URL, port, watchdog pid and start time,
  backend store, and the home's identity (`ServerRecord`).
- `leases/<pid>-<start>-<token>`: one per command using the server (`Lease`).
- `server.lock`: an `flock` taken for every read-modify-write of the two above. The kernel
  drops it when its holder dies, so a killed command never leaves it held.
- `artifacts/ml_platform_home_id.txt`: the home's identity, served by the server itself
  (`/api/2.0/mlflow-artifacts/artifacts/...`): a command uses a server only after reading its
  own home's identity from it, so a server of another home or program that answers on the
  port is never written to.

Who stops the server: the command that releases the last live lease does, at once; and a
watchdog process (`tracking.server_watchdog`, the server's parent, in its own session so a
Ctrl-C or a SIGKILL of a command's process group does not reach it) polls the leases twice a
second and stops the server when no lease belongs to a living process, which covers commands
killed with SIGKILL. Why a watchdog rather than `prctl(PR_SET_PDEATHSIG)`: the death signal
is tied to the one parent *thread* that started the child, so it cannot express "the last of
several commands is gone", and `mlflow server` runs uvicorn as a grandchild that the signal
would not reach. The watchdog kills the server's whole process group. Only a SIGKILL of the
watchdog itself leaves the server running, until the next command on the home finds it
(answering as this home's, its watchdog dead) and stops it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ml_platform import settings
from ml_platform.settings import TRACKING_URI_ENV
from ml_platform.tracking.server import DEFAULT_PORT, free_port

RECORD_FILE = "server.json"
LOCK_FILE = "server.lock"
LEASE_DIR = "leases"
LOG_FILE = "server.log"
MARKER_FILE = "ml_platform_home_id.txt"  # in the artifacts root, served by the server
MARKER_ROUTE = "/api/2.0/mlflow-artifacts/artifacts/"
BOOT_TIMEOUT_S = 120.0


# -- processes -------------------------------------------------------------------------------

def process_start(pid: int) -> str | None:
    """An identity of process `pid` that a reused pid does not share (its start time in clock
    ticks since boot, from /proc), or None when no such process runs (zombies included).
    Without /proc (not Linux) the pid alone is the identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "0"
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (command) "
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return None
    return fields[19]  # field 22 of proc(5): starttime


def alive(pid: int, start: str) -> bool:
    return process_start(pid) == start


# -- files -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerRecord:
    """The server a home started (`server.json`)."""

    url: str
    port: int
    watchdog_pid: int
    watchdog_start: str
    backend_store_uri: str
    home_id: str
    started_at: float

    @property
    def running(self) -> bool:
        return alive(self.watchdog_pid, self.watchdog_start)


@dataclass(frozen=True)
class Lease:
    """One command's use of the home's server: a file named by its process and a token."""

    pid: int
    start: str
    token: str

    @property
    def name(self) -> str:
        return f"{self.pid}-{self.start}-{self.token}"

    @classmethod
    def parse(cls, name: str) -> Lease | None:
        parts = name.split("-")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        return cls(int(parts[0]), parts[1], parts[2])

    @classmethod
    def mine(cls) -> Lease:
        start = process_start(os.getpid()) or "0"
        return cls(os.getpid(), start, uuid.uuid4().hex[:12])


@dataclass(frozen=True)
class HomeFiles:
    """The paths of one home's server bookkeeping (`<home>/mlflow`)."""

    root: Path

    @classmethod
    def of(cls, home: Path | None = None) -> HomeFiles:
        return cls((home / "mlflow") if home is not None else settings.mlflow_dir())

    @property
    def record(self) -> Path:
        return self.root / RECORD_FILE

    @property
    def leases(self) -> Path:
        return self.root / LEASE_DIR

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def backend_store_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_record(self) -> ServerRecord | None:
        try:
            return ServerRecord(**json.loads(self.record.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def write_record(self, record: ServerRecord) -> None:
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(record), indent=2))
        tmp.replace(self.record)

    def home_id(self) -> str:
        """This home's identity, created once and kept in the artifacts root."""
        marker = self.artifacts / MARKER_FILE
        with contextlib.suppress(FileNotFoundError):
            if found := marker.read_text().strip():
                return found
        self.artifacts.mkdir(parents=True, exist_ok=True)
        marker.write_text(uuid.uuid4().hex)
        return marker.read_text().strip()

    def add_lease(self, lease: Lease) -> None:
        self.leases.mkdir(parents=True, exist_ok=True)
        (self.leases / lease.name).write_text(" ".join(sys.argv[:4]))

    def drop_lease(self, lease: Lease) -> None:
        (self.leases / lease.name).unlink(missing_ok=True)

    def live_leases(self) -> list[Lease]:
        """Leases of living processes; the files of dead ones are removed on the way."""
        live = []
        for path in self.leases.glob("*") if self.leases.is_dir() else []:
            lease = Lease.parse(path.name)
            if lease is not None and alive(lease.pid, lease.start):
                live.append(lease)
            else:
                path.unlink(missing_ok=True)
        return live


# -- the server's identity -------------------------------------------------------------------

def served_home_id(url: str, timeout: float = 2.0) -> str | None:
    """The home identity the server at `url` serves, None when it serves none (another
    home's or program's server), raising OSError when nothing answers there (or a 5xx: not
    ready yet)."""
    try:
        with urllib.request.urlopen(f"{url}{MARKER_ROUTE}{MARKER_FILE}", timeout=timeout) as r:
            body: bytes = r.read(200)
            return body.decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise
        return None


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now (nothing else listens there)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- the API ---------------------------------------------------------------------------------

class ServerUnavailable(RuntimeError):
    """The home's server did not come up (or is not this home's): the message says why."""


@dataclass
class HomeServer:
    """The MLflow server a command uses. `note` says what a user should know (the port
    changed); `started` whether this command started it, `external` whether it is the one
    `MLFLOW_TRACKING_URI` names (never started, checked or stopped here)."""

    url: str
    note: str | None = None
    started: bool = False
    external: bool = False
    home_id: str | None = None
    files: HomeFiles | None = None

    def wait_ready(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Block until the server answers as this home's server. Raises ServerUnavailable
        when it stopped (see its log) or answers as another one."""
        if self.external or self.home_id is None or self.files is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            record = self.files.read_record()
            if record is None or record.url != self.url or not record.running:
                raise ServerUnavailable(f"this home's MLflow server at {self.url} stopped while "
                                        f"starting; see {self.files.log}")
            try:
                served = served_home_id(self.url)
            except OSError:
                pass  # not answering yet
            else:
                if served == self.home_id:
                    return
                raise ServerUnavailable(f"{self.url} answers, but not as this home's MLflow "
                                        f"server ({self.files.root}); not using it")
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"this home's MLflow server at {self.url} is not "
                                        f"answering after {timeout:.0f}s; see {self.files.log}")
            time.sleep(0.2)


def _start(files: HomeFiles, port: int, home_id: str) -> tuple[ServerRecord, str | None]:
    """Start the watchdog (which starts the server) on `port`, or on a free port when `port`
    is taken; returns the record and a note when the port changed. Caller holds the lock."""
    note = None
    if not port_is_free(port):
        wanted, port = port, free_port()
        note = (f"port {wanted} is in use by another server (not this home's); this home's "
                f"MLflow server runs on http://127.0.0.1:{port}")
    files.root.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "ml_platform.tracking.server_watchdog",
               "--dir", str(files.root), "--port", str(port)]
    with files.log.open("ab") as log:
        # Its own session: a Ctrl-C or a `kill -- -PGID` aimed at the command does not reach
        # it; it stops the server when the leases say nobody uses it any more.
        watchdog = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
    record = ServerRecord(
        url=f"http://127.0.0.1:{port}", port=port, watchdog_pid=watchdog.pid,
        watchdog_start=process_start(watchdog.pid) or "0",
        backend_store_uri=files.backend_store_uri, home_id=home_id, started_at=time.time())
    files.write_record(record)
    return record, note


def stop_server(files: HomeFiles, record: ServerRecord, timeout: float = 30.0) -> None:
    """Stop the recorded server and its watchdog (one process group) and wait until its port
    is free, so the next command can take it. Caller holds the lock."""
    files.record.unlink(missing_ok=True)
    if not record.running:
        # The watchdog is gone. Its server normally went with it; one that still answers as
        # this home's (the watchdog was SIGKILLed) is in the watchdog's process group, whose
        # id cannot be reused while it has members: stop that group.
        try:
            orphan = served_home_id(record.url, timeout=1.0) == record.home_id
        except OSError:
            orphan = False
        if not orphan:
            return
    with contextlib.suppress(ProcessLookupError):
        # No lease is left, so no request is in flight; SQLite commits every request. The
        # group is the watchdog's: the server and its uvicorn child are in it.
        os.killpg(record.watchdog_pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while not port_is_free(record.port) and time.monotonic() < deadline:
        time.sleep(0.1)


@contextlib.contextmanager
def home_server(home: Path | None = None, port: int = DEFAULT_PORT, *,
                wait: bool = True) -> Iterator[HomeServer]:
    """The MLflow server for one command on `home` (default: `ML_PLATFORM_HOME`).

    The server `MLFLOW_TRACKING_URI` names if set (used as it is); else this home's running
    server (a lease is taken on it); else a new one on `port`, or on a free port when another
    server holds `port` (`note` says so). On exit the lease is returned and, when it was the
    last, the server stops. `wait=False` returns before the server answers (overlap its boot
    with other work, then call `wait_ready`)."""
    if uri := os.environ.get(TRACKING_URI_ENV):
        yield HomeServer(url=uri.rstrip("/"), external=True)
        return
    files = HomeFiles.of(home)
    lease = Lease.mine()
    try:
        with files.locked():
            home_id = files.home_id()
            record = files.read_record()
            note, started = None, False
            if record is None or not record.running or record.home_id != home_id:
                if record is not None:
                    stop_server(files, record)  # a leftover: its watchdog is gone
                files.live_leases()  # prune the leases of dead commands
                files.add_lease(lease)  # before the watchdog looks at the leases
                record, note = _start(files, port, home_id)
                started = True
            else:
                files.add_lease(lease)
        server = HomeServer(url=record.url, note=note, started=started, home_id=home_id,
                            files=files)
        if wait:
            server.wait_ready()
        yield server
    finally:
        release(files, lease)


def release(files: HomeFiles, lease: Lease) -> None:
    """Return `lease`; the last one out stops the home's server."""
    with files.locked():
        files.drop_lease(lease)
        record = files.read_record()
        if record is not None and not files.live_leases():
            stop_server(files, record)


def wait_for_home_server(url: str, home: Path | None = None,
                         timeout: float = BOOT_TIMEOUT_S) -> bool:
    """When `url` is this home's running server, wait until it answers as this home's
    (ServerUnavailable otherwise) and return True; False at once for any other URL."""
    files = HomeFiles.of(home)
    record = files.read_record()
    if record is None or record.url != url.rstrip("/") or not record.running:
        return False
    HomeServer(url=record.url, home_id=record.home_id, files=files).wait_ready(timeout)
    return True
