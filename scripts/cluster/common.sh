# Shared settings for the local development cluster (sourced by the scripts in this folder).
# Everything built is cached under the user's cache directory, keyed by the Debian
# kubernetes source version and the Go toolchain version; runtime state lives under $RUN_DIR.
set -euo pipefail

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"

GO_ROOT="${GO_ROOT:-/usr/lib/go-1.19}"
K8S_DEB_VERSION="${K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/ml-platform/cluster"
# '+' and '~' are legal in paths but awkward in tooling: keep the key plain.
CACHE_KEY="k8s-${K8S_DEB_VERSION//+/_}-go1.19"
BUILD_DIR="$CACHE_ROOT/$CACHE_KEY"
BIN_DIR="$BUILD_DIR/bin"
PAUSE_IMAGE="registry.local/ml-platform/pause:3.4"
PAUSE_TAR="$BUILD_DIR/pause-image.tar"

# The project's image (make image): built with buildah, imported into containerd.
PROJECT_IMAGE="${ML_PLATFORM_IMAGE:-localhost/ml-platform:dev}"
PROJECT_IMAGE_TAR="$CACHE_ROOT/image/ml-platform-image.tar"
# The chart's bundled PostgreSQL for this cluster (scripts/cluster/postgres/), built beside it.
POSTGRES_IMAGE="${ML_PLATFORM_POSTGRES_IMAGE:-localhost/ml-platform-postgres:15}"
POSTGRES_IMAGE_TAR="$CACHE_ROOT/image/postgres-image.tar"

# Runtime state (pid files, logs, certificates, etcd data, containerd root): removed by cluster-down.
RUN_DIR="${ML_PLATFORM_CLUSTER_RUN:-/var/lib/ml-platform-cluster}"
KUBECONFIG_PATH="${ML_PLATFORM_KUBECONFIG:-$CACHE_ROOT/kubeconfig}"
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"

NODE_NAME="${ML_PLATFORM_NODE:-ml-platform-node}"
POD_CIDR="10.88.0.0/16"
SERVICE_CIDR="10.96.0.0/16"
API_SERVICE_IP="10.96.0.1"
BRIDGE="mlp-cni0"
# Created by the kubelet (pod logs), containerd's CRI (network namespaces) and runc when absent;
# cluster-down removes those that were absent before cluster-up.
HOST_PATHS=(/var/log/pods /var/log/containers /var/run/netns /run/containerd /var/lib/cni /etc/cni/net.d)
# sysctls cluster-up, the bridge plugin, kube-proxy and the kubelet (its kernel tunables) set;
# cluster-down writes back the values recorded before cluster-up.
SYSCTLS=(net/ipv4/ip_forward net/ipv4/conf/all/route_localnet net/bridge/bridge-nf-call-iptables
         vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
         kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
GPU_COUNT="${ML_PLATFORM_FAKE_GPUS:-2}"

log() { printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

# The machine's first non-loopback IPv4 address: the kubelet must listen there (not on
# 127.0.0.1) or `kubectl logs/exec` cannot reach it through the API server.
node_ip() {
  ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | grep -v "^10\.88\." | head -1
}
