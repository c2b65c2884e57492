"""Real servers on loopback for the tests of the `k8s` profile: an S3 endpoint (moto's server)
and a PostgreSQL server (initdb + pg_ctl on a temp dir). Context managers, used by fixtures."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def moto_s3(bucket: str = "ml-platform-test") -> Iterator[str]:
    """moto's S3 server on a free loopback port with `bucket` created; yields the endpoint URL.
    Fake credentials are in the environment for the block (moto accepts any)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        with env(**_AWS_ENV, AWS_ENDPOINT_URL=None, AWS_ENDPOINT_URL_S3=None):
            boto3.client("s3", endpoint_url=url).create_bucket(Bucket=bucket)
            yield url
    finally:
        server.stop()


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{db}"


def _pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]))
    if not versions:
        subprocess.run(["bash", str(REPO / "scripts" / "install_postgres.sh")], check=True)
        return _pg_bin()
    return Path(versions[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as `postgres` (or a user made here)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
        user = "postgres"
    except KeyError:
        user = "ml-platform-pg"
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
        subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
    return ["runuser", "-u", user, "--"]


@contextlib.contextmanager
def postgres_server(user: str = "dagster", password: str = "s3cr3t-pg") -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster on a loopback port, password auth over TCP."""
    bin_dir, prefix = _pg_bin(), _as_user()
    root = Path(tempfile.mkdtemp(prefix="ml-platform-pg-"))
    data, pwfile, port = root / "data", root / "pw", _free_port()
    pwfile.write_text(password)
    if prefix:
        owner = pwd.getpwnam(prefix[2])
        for path in (root, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    run = lambda *args: subprocess.run([*prefix, *args], check=True, capture_output=True)  # noqa: E731
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
            "-w", "-t", "60", "start")
        yield Postgres("127.0.0.1", port, user, password)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def create_database(pg: Postgres, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
