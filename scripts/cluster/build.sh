#!/usr/bin/env bash
# Build the cluster's binaries once: kube-apiserver, kube-scheduler, kube-controller-manager,
# kubelet and kubectl from Debian bookworm's `kubernetes` source package with Debian's
# golang-1.19, and a static pause image from the tree's build/pause/linux/pause.c.
# Output: $BUILD_DIR/bin/* and $PAUSE_TAR. A second run is a no-op; a rebuild after an
# interrupted run reuses Go's build cache ($CACHE_ROOT/gocache).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

COMPONENTS=(kube-apiserver kube-scheduler kube-controller-manager kubelet kube-proxy kubectl)

SRC_PARENT="$BUILD_DIR/src"
SRC_TREE="$SRC_PARENT/kubernetes"
REFLECT2="$SRC_TREE/vendor/github.com/modern-go/reflect2"

all_built() {
  [[ -f "$REFLECT2/go_above_118.go" ]] || return 1  # built from the fixed tree (1b below)
  local c
  for c in "${COMPONENTS[@]}" pause; do [[ -x "$BIN_DIR/$c" ]] || return 1; done
  [[ -s "$PAUSE_TAR" ]]
}
if all_built; then exit 0; fi

[[ -x "$GO_ROOT/bin/go" ]] || die "Go not found at $GO_ROOT: apt-get install golang-1.19-go"
for tool in dpkg-source rsync gcc make; do
  command -v "$tool" >/dev/null || die "$tool missing: apt-get install dpkg-dev rsync gcc make"
done
mkdir -p "$BIN_DIR"

# 1. The source package, through a private apt configuration with deb-src lines so the
#    host's sources stay untouched.
if [[ ! -f "$SRC_TREE/build/pause/linux/pause.c" ]]; then
  APT_DIR="$CACHE_ROOT/apt"
  mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" "$SRC_PARENT"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && sed -e 's/^Types: .*/Types: deb-src/' "$f" > "$APT_DIR/sources.list.d/$(basename "$f")"
  done
  if [[ -f /etc/apt/sources.list ]]; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$APT_DIR/sources.list.d/main.list"
  fi
  APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
            -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache::Archives=$APT_DIR/archives"
            -o "APT::Sandbox::User=root")
  log "fetching Debian source package kubernetes=$K8S_DEB_VERSION"
  apt-get -qq "${APT_OPTS[@]}" update
  (cd "$SRC_PARENT" && apt-get -qq "${APT_OPTS[@]}" source --download-only "kubernetes=$K8S_DEB_VERSION")
  rm -rf "$SRC_TREE.tmp"
  (cd "$SRC_PARENT" && dpkg-source --no-check -x ./kubernetes_*.dsc "$SRC_TREE.tmp" >/dev/null)
  mv "$SRC_TREE.tmp" "$SRC_TREE"
  rm -f "$SRC_PARENT"/kubernetes_*.tar.* "$SRC_PARENT"/kubernetes_*.dsc
fi

# 1b. The tree vendors github.com/modern-go/reflect2 v1.0.1, whose map iteration crashes
#     binaries built with Go >= 1.18 ("fatal error: fault" in mapiterinit: the API server dies
#     on the first PATCH of a node's status). v1.0.2 fixes it and is API-compatible: its
#     sources come from Debian's golang-github-modern-go-reflect2-dev.
if [[ ! -f "$REFLECT2/go_above_118.go" ]]; then
  log "vendored reflect2 v1.0.1 -> v1.0.2 (Debian golang-github-modern-go-reflect2-dev)"
  DEB_DIR="$CACHE_ROOT/debs" && rm -rf "$DEB_DIR" && mkdir -p "$DEB_DIR"
  (cd "$DEB_DIR" && apt-get download -qq -o APT::Sandbox::User=root golang-github-modern-go-reflect2-dev)
  dpkg -x "$DEB_DIR"/golang-github-modern-go-reflect2-dev_*.deb "$DEB_DIR/x"
  NEW="$DEB_DIR/x/usr/share/gocode/src/github.com/modern-go/reflect2"
  [[ -f "$NEW/go_above_118.go" ]] || die "unexpected golang-github-modern-go-reflect2-dev layout"
  find "$REFLECT2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  cp "$NEW"/*.go "$NEW"/*.s "$REFLECT2/"
  rm -rf "$DEB_DIR"
  # Anything built from the old sources is stale.
  for c in "${COMPONENTS[@]}"; do rm -f "$BIN_DIR/$c"; done
fi

# 2. The components, one `make WHAT=` each (~15 min cold on 2 cores, <1 min warm).
export PATH="$GO_ROOT/bin:$PATH" GOCACHE="$CACHE_ROOT/gocache" GOFLAGS=-mod=vendor
export KUBE_BUILD_PLATFORMS=linux/amd64
for c in "${COMPONENTS[@]}"; do
  [[ -x "$BIN_DIR/$c" ]] && continue
  log "building $c"
  start=$(date +%s)
  (cd "$SRC_TREE" && nice make WHAT="cmd/$c" >"$BUILD_DIR/build-$c.log" 2>&1) \
    || die "building $c failed: see $BUILD_DIR/build-$c.log"
  cp "$SRC_TREE/_output/local/bin/linux/amd64/$c" "$BIN_DIR/$c.tmp" && mv "$BIN_DIR/$c.tmp" "$BIN_DIR/$c"
  log "built $c in $(( $(date +%s) - start ))s"
done

# 3. The pause image: a static binary in a one-layer OCI archive that containerd imports.
if [[ ! -x "$BIN_DIR/pause" || ! -s "$PAUSE_TAR" ]]; then
  gcc -Os -static -o "$BIN_DIR/pause.tmp" "$SRC_TREE/build/pause/linux/pause.c" -DVERSION=ml-platform
  strip "$BIN_DIR/pause.tmp" && mv "$BIN_DIR/pause.tmp" "$BIN_DIR/pause"
  python3 "$CLUSTER_DIR/oci_image.py" --binary "$BIN_DIR/pause" --name "$PAUSE_IMAGE" \
    --entrypoint /pause --out "$PAUSE_TAR"
fi
log "build complete: $BIN_DIR"
