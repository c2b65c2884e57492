#!/usr/bin/env bash
# Stop the local cluster and undo every host change cluster-up made: pods (through the CRI, so
# their network is torn down), processes, mounts, network namespaces, the bridge, iptables rules,
# sysctls, cgroups, and the paths it created. Safe to run when the cluster is down or half up.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $EUID -eq 0 ]] || die "cluster-down needs root"
[[ -d "$RUN_DIR" ]] || { log "nothing to do ($RUN_DIR absent)"; rm -f "$KUBECONFIG_PATH"; exit 0; }
KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$RUN_DIR/admin.kubeconfig" --request-timeout 10s)
CTR=(ctr --address "$CONTAINERD_SOCK" -n k8s.io)

running() { [[ -f "$RUN_DIR/pids/$1" ]] && kill -0 "$(cat "$RUN_DIR/pids/$1")" 2>/dev/null; }
stop() {  # name...: SIGTERM, then SIGKILL after 15 s, by the pid cluster-up recorded
  local name pid i
  for name in "$@"; do
    running "$name" || { rm -f "$RUN_DIR/pids/$name"; continue; }
    pid=$(cat "$RUN_DIR/pids/$name")
    log "stopping $name ($pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$RUN_DIR/pids/$name"
  done
}

# 1. Pods: with the controllers stopped nothing recreates them; the kubelet stops each one
#    through the CRI, which runs the CNI teardown (veth, IP, masquerade rules).
stop kube-controller-manager kube-scheduler
if running kube-apiserver && running kubelet; then
  log "deleting every pod through the kubelet"
  "${KUBECTL[@]}" delete pods --all --all-namespaces --grace-period 1 --wait --timeout 90s >/dev/null 2>&1 || true
  for i in $(seq 60); do
    [[ -z "$("${CTR[@]}" tasks ls -q 2>/dev/null)" ]] && break
    sleep 1
  done
fi
stop kubelet dns-feeder dnsmasq kube-proxy
if [[ -x "$BIN_DIR/kube-proxy" ]]; then "$BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi

# 2. Whatever containers remain (the kubelet was already gone): killed and removed directly.
if running containerd; then
  for task in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
  done
  sleep 1
  for task in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$task" >/dev/null 2>&1 || true; done
  for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$c" >/dev/null 2>&1 || true; done
fi
stop containerd
# Shims outlive containerd by design: end the ones serving this cluster's socket, by pid.
for proc in /proc/[0-9]*; do
  if tr '\0' ' ' < "$proc/cmdline" 2>/dev/null | grep -qF -- "-address $CONTAINERD_SOCK "; then
    kill -KILL "${proc#/proc/}" 2>/dev/null || true
  fi
done
stop kube-apiserver etcd

# 3. Mounts (overlay rootfs, shm, volumes) under the state directory, deepest first, and the
#    network namespaces the CRI pinned.
findmnt -rn -o TARGET | grep -F "$RUN_DIR/" | sort -r | while read -r target; do
  umount "$target" 2>/dev/null || umount -l "$target" || true
done
HOST_STATE="$RUN_DIR/host-state"
for ns in /var/run/netns/cni-*; do
  [[ -e "$ns" ]] || continue
  grep -qxF "netns=$ns" "$HOST_STATE" 2>/dev/null && continue
  umount "$ns" 2>/dev/null || true
  rm -f "$ns"
done

# 4. Network: the bridge, the rules (what kube-proxy --cleanup and CNI teardown left, if any).
if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
strip_counters() { grep -v '^#' | sed -e 's/\[[0-9]*:[0-9]*\]//'; }
restore_rules() {  # iptables|ip6tables nft-family: back to what cluster-up saved
  local cmd=$1 family=$2 before="$RUN_DIR/$1.before" table
  [[ -f "$before" ]] || return 0
  diff -q <(strip_counters < "$before") <("$cmd-save" | strip_counters) >/dev/null && return 0
  log "restoring the $cmd rules saved by cluster-up (the kubelet's chains, say)"
  local added; added=$(comm -13 <(sed -n 's/^\*//p' "$before" | sort) <("$cmd-save" | sed -n 's/^\*//p' | sort))
  # A table listed without rules is flushed, its own chains deleted; tables that did not
  # exist before are then removed (nft), so the host is back to exactly what it was.
  { cat "$before"; for table in $added; do printf '*%s\nCOMMIT\n' "$table"; done; } | "$cmd-restore"
  if command -v nft >/dev/null; then
    for table in $added; do nft delete table "$family" "$table" 2>/dev/null || true; done
  fi
}
restore_rules iptables ip
restore_rules ip6tables ip6

# 5. sysctls, cgroups the kubelet made, paths that did not exist before.
if [[ -f "$HOST_STATE" ]]; then
  while IFS='=' read -r key value; do
    case "$key" in
      sysctl) echo "${value#* }" > "/proc/sys/${value%% *}" || log "could not restore ${value%% *}" ;;
      created) rm -rf "$value" ;;
    esac
  done < "$HOST_STATE"
fi
for hierarchy in /sys/fs/cgroup/*/; do
  if [[ -d "${hierarchy}kubepods" ]]; then
    find "${hierarchy}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
  fi
done
rm -rf "$RUN_DIR" "$KUBECONFIG_PATH"
log "down: processes stopped, host restored"
