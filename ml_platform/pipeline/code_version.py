"""Code versions: a hash of what decides a model's behaviour, so Dagster and MLflow can tell
when training must rerun and when an existing run can be reused."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from ml_platform.specs import ModelSpec

_PACKAGE = Path(__file__).resolve().parents[1]
# What decides how a model trains: its code, and the libraries it runs on (a dependency bump
# retrains, as a code change does). The rest of the package (CLI, orchestration) does not.
_TRAINING_SOURCES = ("ml", "compute/entrypoint.py", "compute/request.py", "runtime.lock")


@cache
def _source_digest() -> str:
    digest = hashlib.sha256()
    for entry in _TRAINING_SOURCES:
        root = _PACKAGE / entry
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            digest.update(path.relative_to(_PACKAGE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def training_code_version(spec: ModelSpec) -> str:
    """Changes when the model's spec, a training source file or the runtime lock changes."""
    return hashlib.sha256(f"{spec.fingerprint}:{_source_digest()}".encode()).hexdigest()[:12]
