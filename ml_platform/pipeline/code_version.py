"""Code versions: a hash of what decides a model's behaviour, so Dagster and MLflow can tell
when training must rerun and when an existing run can be reused."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from ml_platform.specs import ModelSpec

_PACKAGE = Path(__file__).resolve().parents[1]
_TRAINING_SOURCES = ("ml", "compute/entrypoint.py", "compute/request.py")


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
    """Changes when the model's spec or any training source file changes."""
    return hashlib.sha256(f"{spec.fingerprint}:{_source_digest()}".encode()).hexdigest()[:12]
