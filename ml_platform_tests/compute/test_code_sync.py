"""Code sync (`compute.code_package`, `compute.code_sync`): a code package is named by its
content (byte-code left out, the outside spec folder in), stored once per hash, and refused
when tampered with; a pod's `code_sync` runs COMMAND from the fetched package ahead of the
installed `ml_platform`, refuses an image built from another runtime lock naming both hashes,
and with code sync off refuses an image whose code is not the orchestrator's.

Real: `python -m ml_platform.compute.code_sync` as a process, reading packages from a folder
through pyarrow's filesystem (as it reads `s3://` in a pod). The "image" is this environment's
installed `ml_platform`; the store is a folder standing in for the S3 lake (the cluster test
`cluster/test_code_sync.py` uses S3 and a real image)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ml_platform import names, settings
from ml_platform.compute import code_package
from ml_platform.compute.code_package import CodePackageError, build, lock_hash, package_hash
from ml_platform.compute.code_sync import EXIT_REFUSED, REFUSED
from ml_platform.storage.lake import Lake

PROBE = "import ml_platform, ml_platform.probe as p; print(p.VALUE, ml_platform.__file__)"


class SharedFolder(Lake):
    """The local lake, declared shared: a folder every process here can read."""

    @property
    def is_shared(self) -> bool:
        return True


@pytest.fixture
def changed(tmp_path: Path) -> Path:
    """A copy of the installed package with one more module: the orchestrator's edited code."""
    copy = tmp_path / "src" / "ml_platform"
    shutil.copytree(code_package.PACKAGE_DIR, copy,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (copy / "probe.py").write_text('VALUE = "shipped"\n')
    return copy


def _code_sync(env: dict[str, str], home: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """`python -m ml_platform.compute.code_sync -- COMMAND` as a pod runs it (the image's code
    is this environment's)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ML_PLATFORM_")}
    return subprocess.run(
        [sys.executable, "-m", "ml_platform.compute.code_sync", "--", *command],
        env={**base, **env, "HOME": str(home)}, capture_output=True, text=True, timeout=120)


def test_a_package_is_named_by_its_content(changed: Path, tmp_path: Path) -> None:
    here = build()
    assert build().code_hash == here.code_hash == package_hash()  # specs inside the package
    assert here.lake_key == names.code_package_lake_key(here.code_hash)
    (changed / "probe.py").unlink()
    (changed / "__pycache__").mkdir(exist_ok=True)
    (changed / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert build(changed).code_hash == here.code_hash  # same files; byte-code left out
    (changed / "names.py").write_text((changed / "names.py").read_text() + "# edited\n")
    assert build(changed).code_hash != here.code_hash

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "m.yaml").write_text("name: m\n")
    with_specs = build(spec_dir=specs)
    assert with_specs.code_hash != here.code_hash and with_specs.files == here.files + 1
    with tarfile.open(fileobj=io.BytesIO(with_specs.archive)) as tar:
        assert "specs/m.yaml" in tar.getnames()


def test_a_package_is_stored_once_per_hash(tmp_path: Path) -> None:
    store = SharedFolder(root=str(tmp_path / "lake"))
    first, again = code_package.ship(store), code_package.ship(store)
    assert first.uploaded and not again.uploaded and first.code_hash == again.code_hash
    assert store.exists(names.code_package_lake_key(first.code_hash))
    assert first.env == {settings.CODE_HASH_ENV: first.code_hash,
                         settings.RUNTIME_LOCK_ENV: lock_hash(),
                         settings.CODE_PACKAGE_ENV: store.uri(f"code/{first.code_hash}.tar.gz")}
    with pytest.raises(ValueError, match="lake the training pods can read"):
        code_package.ship(Lake(root=str(tmp_path / "local")))
    off = code_package.ship(None, sync=False)  # the image's code, named only
    assert off.env == {settings.CODE_HASH_ENV: package_hash(), settings.RUNTIME_LOCK_ENV: lock_hash()}


def test_a_tampered_package_is_refused(tmp_path: Path) -> None:
    package = build()
    with pytest.raises(CodePackageError, match=f"not the expected {'0' * 64}"):
        code_package.unpack(package.archive, "0" * 64, tmp_path / "a")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../outside.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(CodePackageError, match="not a plain relative file"):
        code_package.unpack(buffer.getvalue(), "0" * 64, tmp_path / "b")
    assert not (tmp_path / "outside.py").exists() and not (tmp_path / "a").exists()


def test_a_pod_runs_the_shipped_code_ahead_of_the_image(changed: Path, tmp_path: Path) -> None:
    store = SharedFolder(root=str(tmp_path / "lake"))
    package = build(changed)
    store.write_bytes(package.lake_key, package.archive)
    env = code_package.env_for(package.code_hash, package.lock_hash, store.uri(package.lake_key))
    done = _code_sync(env, tmp_path / "home", sys.executable, "-c", PROBE)
    assert done.returncode == 0, done.stderr
    target = tmp_path / "home" / "code" / package.code_hash
    assert done.stdout.split() == ["shipped", str(target / "ml_platform" / "__init__.py")]
    assert f"running code package {package.code_hash[:12]}" in done.stderr
    # What the training records of it (the entrypoint reads the same environment).
    record = code_package.code_record({**env, code_package.SYNC_SECONDS_ENV: "0.25"})
    assert record.tags == {names.Tag.CODE_PACKAGE: package.code_hash,
                           names.Tag.CODE_SOURCE: "code package"}
    assert record.metrics == {names.CODE_SYNC_SECONDS: 0.25}
    assert code_package.code_record({}).tags == {}  # a local training: nothing shipped


def test_a_pod_refuses_code_made_for_another_runtime_lock(changed: Path, tmp_path: Path) -> None:
    (changed / "runtime.lock").write_text((changed / "runtime.lock").read_text() + "extra==1.0\n")
    store = SharedFolder(root=str(tmp_path / "lake"))
    package = build(changed)
    store.write_bytes(package.lake_key, package.archive)
    env = code_package.env_for(package.code_hash, package.lock_hash, store.uri(package.lake_key))
    done = _code_sync(env, tmp_path / "home", sys.executable, "-c", PROBE)
    assert done.returncode == EXIT_REFUSED and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(REFUSED)
    assert lock_hash() in line and package.lock_hash in line and package.lock_hash != lock_hash()
    assert not (tmp_path / "home" / "code").exists()  # nothing fetched for a refused image


def test_with_code_sync_off_the_image_code_must_be_the_orchestrators(tmp_path: Path) -> None:
    ok = _code_sync(code_package.ship(None, sync=False).env, tmp_path, sys.executable, "-c",
                    "print('trained')")
    assert ok.returncode == 0 and ok.stdout == "trained\n", ok.stderr
    other = "f" * 64
    refused = _code_sync(code_package.env_for(other, lock_hash(), None), tmp_path,
                         sys.executable, "-c", "print('trained')")
    assert refused.returncode == EXIT_REFUSED and refused.stdout == ""
    assert package_hash() in refused.stderr and other in refused.stderr
    assert "training.codeSync" in refused.stderr
