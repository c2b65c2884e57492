"""The lake: where assets keep the tables and manifests they produce."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ml_platform import settings
from ml_platform.storage.interfaces import LakeStore


class Lake(LakeStore):
    """A local lake folder (`$ML_PLATFORM_HOME/lake` unless `root` is set).

    Paths are relative keys like `bookings/validated/2026-01-01.parquet`; every write is atomic.
    """

    root: str | None = None

    @property
    def base(self) -> Path:
        return Path(self.root) if self.root else settings.lake_dir()

    @property
    def is_shared(self) -> bool:
        return False  # a folder of this machine: a training pod elsewhere cannot read it

    def uri(self, key: str) -> str:
        return str(self.base / key)

    def exists(self, key: str) -> bool:
        return (self.base / key).exists()

    def _write(self, key: str, data: bytes) -> str:
        path = self.base / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return str(path)

    def write_bytes(self, key: str, data: bytes) -> str:
        return self._write(key, data)

    def write_parquet(self, key: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self._write(key, buffer.getvalue())

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.base / key, columns=columns)

    def write_json(self, key: str, payload: dict[str, Any]) -> str:
        return self._write(key, json.dumps(payload, indent=2, default=str).encode())

    def read_json(self, key: str) -> dict[str, Any]:
        return json.loads((self.base / key).read_text())

    def list_keys(self, prefix: str) -> dict[str, float]:
        folder = self.base / prefix
        if not folder.is_dir():
            return {}
        found = {str(p.relative_to(self.base)): p.stat().st_mtime for p in folder.iterdir()
                 if p.is_file() and not p.name.startswith(".")}
        return dict(sorted(found.items(), key=lambda kv: kv[1]))

    def delete(self, key: str) -> None:
        (self.base / key).unlink(missing_ok=True)
