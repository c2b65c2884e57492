"""Code packages: the code the orchestrator runs, as one archive named by its content.

A code package holds the `ml_platform` package of the running orchestrator (every file but
byte-code) and, when the model specs come from a folder outside it (`$ML_PLATFORM_SPEC_DIR`),
that folder under `specs/`. Its hash (`tree_hash`) is a sha256 over each file's path and
content, so the same code has the same hash on every machine, whatever the archive's bytes.
Both sides use this module: the orchestrator to build and upload a package
(`compute.k8s`), the training pod to verify what it fetched (`compute.code_sync`).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from ml_platform import names, settings
from ml_platform.specs.model_spec import SPEC_DIR, SPEC_DIR_ENV

PACKAGE_DIR = Path(__file__).resolve().parents[1]
LOCK_NAME = "runtime.lock"
"""The runtime dependencies, pinned (`make lock`): inside the package, so the orchestrator
finds the lock its code goes with, and an image finds the one it was built from."""
SPECS_ARCNAME = "specs"
CODE_SOURCE_PACKAGE = "code package"
CODE_SOURCE_IMAGE = "image"
SYNC_SECONDS_ENV = "ML_PLATFORM_CODE_SYNC_SECONDS"
"""Set by `code_sync` for the training: how long checking (and fetching) the code took."""


def lock_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """The sha256 of the runtime lock of the `ml_platform` package at `package_dir`."""
    path = package_dir / LOCK_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no runtime lock {path}: run `make lock`")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root: Path, arcname: str) -> Iterator[tuple[str, Path]]:
    """Regular files below `root` as (archive path, file), byte-code and hidden files left out
    (what the image's `COPY` keeps, `.dockerignore` dropping `__pycache__`)."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (not path.is_file() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo")
                or any(part.startswith(".") for part in rel.parts)):
            continue
        yield f"{arcname}/{rel.as_posix()}", path


def spec_dir_outside_package() -> Path | None:
    """The folder of model specs in use when it is not the package's own."""
    folder = Path(os.environ.get(SPEC_DIR_ENV) or SPEC_DIR).resolve()
    return None if folder.is_relative_to(PACKAGE_DIR) else folder


def tree_hash(entries: Iterable[tuple[str, bytes]]) -> str:
    """The content hash of files given as (archive path, bytes), in any order."""
    digest = hashlib.sha256()
    for name, data in sorted(entries):
        digest.update(f"{name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return digest.hexdigest()


def package_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """The content hash of an `ml_platform` package alone (no spec folder): what a pod
    compares its image's code with when code sync is off."""
    return tree_hash((name, path.read_bytes()) for name, path in _files(package_dir, "ml_platform"))


@dataclass(frozen=True)
class CodePackage:
    """A built package: its content hash, the runtime lock's hash it was made with, and the
    archive (tar.gz) to upload."""

    code_hash: str
    lock_hash: str
    archive: bytes
    files: int

    @property
    def lake_key(self) -> str:
        return names.code_package_lake_key(self.code_hash)


def build(package_dir: Path = PACKAGE_DIR, spec_dir: Path | None = None) -> CodePackage:
    """Pack `package_dir` (and `spec_dir` under `specs/`, if given) into a code package."""
    files = list(_files(package_dir, "ml_platform"))
    if spec_dir is not None:
        files += list(_files(spec_dir, SPECS_ARCNAME))
    contents = [(name, path.read_bytes()) for name, path in files]
    buffer = io.BytesIO()
    # gzip level 1: a tenth of the time of the default for a few percent more bytes
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, data in sorted(contents):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return CodePackage(code_hash=tree_hash(contents), lock_hash=lock_hash(package_dir),
                       archive=buffer.getvalue(), files=len(contents))


class CodePackageError(RuntimeError):
    """A code package that cannot be used: unreadable, tampered with, or for other libraries."""


def unpack(archive: bytes, expected_hash: str, target: Path) -> Path:
    """Extract `archive` into `target` (regular files only, no path leaving it) after checking
    that its content hash is `expected_hash`; `target`, ready to put on `sys.path`."""
    entries: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                if not member.isfile() or name.is_absolute() or ".." in name.parts:
                    raise CodePackageError(f"code package entry {member.name!r} is not a plain "
                                           "relative file")
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                entries.append((member.name, data))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CodePackageError(f"code package {expected_hash[:12]} does not unpack: {exc}") from exc
    found = tree_hash(entries)
    if found != expected_hash:
        raise CodePackageError(f"code package content hash {found} is not the expected "
                               f"{expected_hash}: refusing to run it")
    for entry, data in entries:
        path = target / entry
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target


def env_for(code_hash: str, lock: str, package_uri: str | None) -> dict[str, str]:
    """The variables that tell a training pod's `code_sync` what to run: the package at
    `package_uri` (None: the image's code, which must hash to `code_hash`)."""
    env = {settings.CODE_HASH_ENV: code_hash, settings.RUNTIME_LOCK_ENV: lock}
    if package_uri is not None:
        env[settings.CODE_PACKAGE_ENV] = package_uri
    return env


class CodeStore(Protocol):
    """Where code packages go: the lake (`storage.LakeStore` has this shape)."""

    @property
    def is_shared(self) -> bool: ...

    def exists(self, key: str) -> bool: ...

    def write_bytes(self, key: str, data: bytes) -> str: ...

    def uri(self, key: str) -> str: ...


@dataclass(frozen=True)
class Shipment:
    """What a training pod is told to run: the code's content hash and the variables for
    `code_sync`; `uploaded`: whether this call stored the package (False: it was there)."""

    code_hash: str
    env: dict[str, str]
    uploaded: bool = False
    archive_bytes: int = 0


def ship(store: CodeStore | None, *, sync: bool = True) -> Shipment:
    """Package the running code and store it in `store` unless a package of the same content
    is there already; with `sync` off, only name the code the image must hold. `store` None:
    nothing is stored, the URI is a placeholder (`ml-platform k8s render`)."""
    if not sync:
        code = package_hash()
        return Shipment(code, env_for(code, lock_hash(), None))
    package = build(spec_dir=spec_dir_outside_package())
    if store is None:
        uri, uploaded = f"<lake URI of {package.lake_key}>", False
    else:
        if not store.is_shared:
            raise ValueError("code sync needs a lake the training pods can read (the k8s "
                             "profile's S3 bucket); this lake is a local folder")
        uploaded = not store.exists(package.lake_key)
        if uploaded:
            store.write_bytes(package.lake_key, package.archive)
        uri = store.uri(package.lake_key)
    return Shipment(package.code_hash, env_for(package.code_hash, package.lock_hash, uri),
                    uploaded=uploaded, archive_bytes=len(package.archive))


@dataclass(frozen=True)
class CodeRecord:
    """What a training records of the code it ran: tags and metrics of its MLflow run, also in
    the `trained` step's metadata."""

    tags: dict[str, str]
    metrics: dict[str, float]


def code_record(env: Mapping[str, str]) -> CodeRecord:
    """The code a training pod ran, as `code_sync` verified it (nothing outside a pod: a local
    training runs the orchestrator's own code)."""
    code_hash = env.get(settings.CODE_HASH_ENV)
    if not code_hash:
        return CodeRecord({}, {})
    source = CODE_SOURCE_PACKAGE if env.get(settings.CODE_PACKAGE_ENV) else CODE_SOURCE_IMAGE
    seconds = env.get(SYNC_SECONDS_ENV)
    return CodeRecord({names.Tag.CODE_PACKAGE: code_hash, names.Tag.CODE_SOURCE: source},
                      {names.CODE_SYNC_SECONDS: float(seconds)} if seconds else {})
