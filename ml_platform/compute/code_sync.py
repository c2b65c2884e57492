"""`python -m ml_platform.compute.code_sync -- COMMAND...`: how a training pod starts its training.

It runs from the image, before the training's own code, and checks two things:

- the image was built from the runtime lock the orchestrator's code was made with
  (`$ML_PLATFORM_RUNTIME_LOCK`): new code on other libraries would fail late, or train
  differently;
- with code sync on (`$ML_PLATFORM_CODE_PACKAGE`, a lake URI): the code package it fetches has
  the content hash `$ML_PLATFORM_CODE_HASH`; it is unpacked on the pod's scratch volume and
  COMMAND runs from there, its `ml_platform` ahead of the image's (the working directory and
  `PYTHONPATH`). With code sync off: the image's own `ml_platform` hashes to
  `$ML_PLATFORM_CODE_HASH`, the code the orchestrator runs.

A refusal is one line naming both hashes, on stderr and in the container's termination message
(which the `trained` step's error carries); the exit status is 3 and nothing is trained.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from ml_platform import settings
from ml_platform.compute.code_package import (
    PACKAGE_DIR,
    SPECS_ARCNAME,
    SYNC_SECONDS_ENV,
    CodePackageError,
    lock_hash,
    package_hash,
    unpack,
)
from ml_platform.specs.model_spec import SPEC_DIR_ENV

REFUSED = "code sync refused:"
"""How every refusal starts: the orchestrator tells it from a failed training (no retry)."""
EXIT_REFUSED = 3
TERMINATION_LOG = Path("/dev/termination-log")


def fetch(uri: str) -> bytes:
    """The object at a lake URI (`s3://...` with pyarrow's endpoint query, or a path), read as
    the training set is read: credentials from the environment."""
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    # compression=None: pyarrow would otherwise gunzip a `.gz` object while reading it
    with filesystem.open_input_stream(path, compression=None) as stream:
        return stream.read()


def check_lock(expected: str, package_dir: Path = PACKAGE_DIR) -> None:
    image = lock_hash(package_dir)
    if image != expected:
        raise CodePackageError(
            f"image built from runtime lock {image}, code made with lock {expected}: rebuild "
            "the image from the code's ml_platform/runtime.lock (`make image`)")


def prepare(env: dict[str, str], scratch: Path) -> tuple[Path | None, dict[str, str]]:
    """Check the image and fetch the code: the directory COMMAND runs in (None: the current
    one, the image's code) and the variables to add to its environment."""
    began = time.perf_counter()
    expected_lock, expected_code = env.get(settings.RUNTIME_LOCK_ENV), env.get(settings.CODE_HASH_ENV)
    if not expected_lock or not expected_code:
        raise CodePackageError(f"{settings.RUNTIME_LOCK_ENV} and {settings.CODE_HASH_ENV} must "
                               "be set (by the `trained` step that starts this pod)")
    check_lock(expected_lock)
    uri = env.get(settings.CODE_PACKAGE_ENV)
    if not uri:  # code sync off: the image's code must be the orchestrator's
        found = package_hash()
        if found != expected_code:
            raise CodePackageError(
                f"code sync off, and the image's code is {found}, the orchestrator's "
                f"{expected_code}: rebuild the image, or turn code sync on (training.codeSync)")
        return None, {SYNC_SECONDS_ENV: f"{time.perf_counter() - began:.3f}"}
    target = scratch / "code" / expected_code
    try:
        archive = fetch(uri)
    except OSError as exc:
        raise CodePackageError(f"cannot read code package {uri}: {exc}") from exc
    unpack(archive, expected_code, target)
    extra = {"PYTHONPATH": os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH")) if p),
             SYNC_SECONDS_ENV: f"{time.perf_counter() - began:.3f}"}
    if (target / SPECS_ARCNAME).is_dir():
        extra[SPEC_DIR_ENV] = str(target / SPECS_ARCNAME)
    print(f"code sync: running code package {expected_code[:12]} ({len(archive) / 1e6:.2f} MB, "
          f"fetched and verified in {extra[SYNC_SECONDS_ENV]} s)", file=sys.stderr, flush=True)
    return target, extra


def refuse(reason: str) -> None:
    message = f"{REFUSED} {reason}"
    print(message, file=sys.stderr, flush=True)
    with contextlib.suppress(OSError):  # not in a container
        TERMINATION_LOG.write_text(message)
    sys.exit(EXIT_REFUSED)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1:] if "--" in argv else argv
    if not command:
        sys.exit("usage: python -m ml_platform.compute.code_sync -- COMMAND...")
    try:
        workdir, extra = prepare(dict(os.environ), Path(os.environ.get("HOME") or "/tmp"))
    except CodePackageError as exc:
        refuse(str(exc))
        return
    if workdir is not None:
        os.chdir(workdir)  # `python -m` puts the working directory first on sys.path
    os.execvpe(command[0], command, {**os.environ, **extra})


if __name__ == "__main__":
    main()
