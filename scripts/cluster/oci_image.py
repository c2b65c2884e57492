"""Write a one-layer image archive (`docker save` layout) holding a single static binary.

containerd imports it with `ctr -n k8s.io images import`; the cluster uses it as its pause
image (and tests as a trivial container). Standard library only: no image tooling needed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def layer_tar(binary: Path, entry: str) -> bytes:
    """An uncompressed layer with the binary at `entry`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, entry.lstrip("/"), binary.read_bytes(), mode=0o755)
    return buf.getvalue()


def write_archive(binary: Path, name: str, entrypoint: str, out: Path) -> None:
    layer = layer_tar(binary, entrypoint)
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": [entrypoint], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created_by": f"scripts/cluster/oci_image.py {binary.name}"}],
    }, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [name],
                            "Layers": [f"{layer_digest}/layer.tar"]}]).encode()
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, config_name, config)
        _add(tar, f"{layer_digest}/layer.tar", layer)
        _add(tar, "manifest.json", manifest)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--name", required=True, help="image reference, e.g. registry.local/x:1")
    parser.add_argument("--entrypoint", default="/pause")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_archive(args.binary, args.name, args.entrypoint, args.out)


if __name__ == "__main__":
    main()
