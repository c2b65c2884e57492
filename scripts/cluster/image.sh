#!/usr/bin/env bash
# Build the project's image from the unmodified Dockerfile with Debian's buildah (chroot
# isolation, no daemon) and load it into the local cluster's containerd.
#  - base: Debian bookworm from debootstrap with python3.11 + pip (instead of python:3.11-slim,
#    which needs a container registry), carrying this machine's CA bundle so pip inside the
#    build trusts what the host trusts;
#  - torch: the on-disk CPU wheel, offered with its dependencies through a local package index
#    (TORCH_INDEX_URL, a file:// index mounted into the build), since the PyTorch download
#    site is not reachable;
#  - buildah's storage lives under the cache directory, not /var/lib/containers.
# Also the chart's bundled PostgreSQL for the local cluster ($POSTGRES_IMAGE, postgres/Containerfile:
# Debian's postgresql-15 on the same base), since there is no registry to pull postgres:16.4 from.
# Usage: image.sh [--no-import | --if-missing | --project-only]. Output: $PROJECT_IMAGE_TAR and
# $POSTGRES_IMAGE_TAR, and both images in the cluster's containerd (namespace k8s.io).
# --if-missing: nothing to do when containerd has both. --project-only: the project's image
# alone (benchmarks/cluster_loop.py's rebuild path).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $EUID -eq 0 ]] || die "image.sh needs root (buildah chroot isolation, debootstrap)"
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || die "$tool missing: apt-get install buildah debootstrap"
done
IMPORT=1
POSTGRES=1
case "${1:-}" in
  --no-import) IMPORT=0 ;;
  --project-only) POSTGRES=0 ;;
  --if-missing)
    in_cluster() { ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q "name==$1" 2>/dev/null | grep -q .; }
    if in_cluster "$PROJECT_IMAGE" && in_cluster "$POSTGRES_IMAGE"; then
      log "$PROJECT_IMAGE and $POSTGRES_IMAGE are in the cluster already (make image rebuilds them)"; exit 0
    fi ;;
  "") ;;
  *) die "usage: image.sh [--no-import | --if-missing | --project-only]" ;;
esac
IMAGE_DIR="$CACHE_ROOT/image"
BASE="localhost/ml-platform-base:bookworm-py3.11"
BUILDAH=(buildah --root "$IMAGE_DIR/storage" --runroot "$IMAGE_DIR/run" --storage-driver overlay)
mkdir -p "$IMAGE_DIR"
T0=$(date +%s)

# 1. The base image, once.
if ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  log "debootstrap: Debian bookworm + python3 + pip"
  MIRROR="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  ROOTFS="$IMAGE_DIR/rootfs"
  rm -rf "$ROOTFS"
  nice debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$ROOTFS" "${MIRROR:-http://deb.debian.org/debian}" > "$IMAGE_DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed: see $IMAGE_DIR/debootstrap.log"
  # pip installs into the image's system Python, as in python:3.11-slim (no PEP 668 marker),
  # and trusts this machine's CAs (a TLS-inspecting proxy to the package registry, say).
  rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" -cf "$IMAGE_DIR/rootfs.tar" .
  ctr_id=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$ctr_id" "$IMAGE_DIR/rootfs.tar" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr_id"
  "${BUILDAH[@]}" commit --quiet "$ctr_id" "$BASE" >/dev/null
  "${BUILDAH[@]}" rm "$ctr_id" >/dev/null
  rm -rf "$ROOTFS" "$IMAGE_DIR/rootfs.tar"
fi

# 2. A local package index with torch 2.13.0 (the on-disk wheel) and its dependencies.
INDEX="$IMAGE_DIR/index"
if [[ ! -f "$INDEX/simple/torch/index.html" ]]; then
  log "local index: torch==2.13.0 and its dependencies"
  rm -rf "$INDEX" && mkdir -p "$INDEX/wheels"
  python3 -m pip download --quiet --dest "$INDEX/wheels" --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 "torch==2.13.0"
  python3 - "$INDEX" <<'PY'
"""A PEP 503 simple index over the downloaded wheels."""
import re, sys
from pathlib import Path
index = Path(sys.argv[1])
projects: dict[str, list[str]] = {}
for wheel in sorted((index / "wheels").glob("*.whl")):
    name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    projects.setdefault(name, []).append(wheel.name)
for name, files in projects.items():
    page = index / "simple" / name / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    links = "".join(f'<a href="../../wheels/{f}">{f}</a><br>\n' for f in files)
    page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
PY
fi

# 3. The Dockerfile, unmodified: only its build arguments point at the local base and index.
# The index is mounted read-only into the build's RUN steps and read as a file:// index (a
# fixed URL, so buildah's layer cache holds across builds).
log "buildah bud -> $PROJECT_IMAGE"
B0=$(date +%s)
"${BUILDAH[@]}" bud --isolation chroot --layers --volume "$INDEX:/ml-platform-index:ro" \
  --build-arg "BASE_IMAGE=$BASE" --build-arg "TORCH_INDEX_URL=file:///ml-platform-index/simple" \
  -f "$REPO_ROOT/Dockerfile" -t "$PROJECT_IMAGE" "$REPO_ROOT" > "$IMAGE_DIR/build.log" 2>&1 \
  || { tail -20 "$IMAGE_DIR/build.log" >&2; die "image build failed: see $IMAGE_DIR/build.log"; }
log "built in $(( $(date +%s) - B0 ))s"
E0=$(date +%s)
rm -f "$PROJECT_IMAGE_TAR"
"${BUILDAH[@]}" push --quiet "$PROJECT_IMAGE" "docker-archive:$PROJECT_IMAGE_TAR:$PROJECT_IMAGE" >/dev/null
log "exported in $(( $(date +%s) - E0 ))s"
TARS=("$PROJECT_IMAGE_TAR")

# 4. The chart's PostgreSQL for the local cluster (apt inside the build; cached layers after).
if (( POSTGRES )); then
  log "buildah bud -> $POSTGRES_IMAGE"
  "${BUILDAH[@]}" bud --isolation chroot --layers --build-arg "BASE_IMAGE=$BASE" \
    -f "$CLUSTER_DIR/postgres/Containerfile" -t "$POSTGRES_IMAGE" "$CLUSTER_DIR/postgres" \
    > "$IMAGE_DIR/postgres-build.log" 2>&1 \
    || { tail -20 "$IMAGE_DIR/postgres-build.log" >&2; die "postgres image build failed: see $IMAGE_DIR/postgres-build.log"; }
  rm -f "$POSTGRES_IMAGE_TAR"
  "${BUILDAH[@]}" push --quiet "$POSTGRES_IMAGE" "docker-archive:$POSTGRES_IMAGE_TAR:$POSTGRES_IMAGE" >/dev/null
  TARS+=("$POSTGRES_IMAGE_TAR")
fi

# 5. Into the cluster's containerd, where pods with imagePullPolicy IfNotPresent find them.
if (( IMPORT )); then
  [[ -S "$CONTAINERD_SOCK" ]] || die "the cluster is not up (make cluster-up); the archives are $PROJECT_IMAGE_TAR and $POSTGRES_IMAGE_TAR"
  I0=$(date +%s)
  for tar in "${TARS[@]}"; do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$tar" >/dev/null
  done
  log "imported into containerd in $(( $(date +%s) - I0 ))s"
fi
log "image $PROJECT_IMAGE ready in $(( $(date +%s) - T0 ))s"
