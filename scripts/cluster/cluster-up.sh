#!/usr/bin/env bash
# Start a single-node Kubernetes 1.20 on this machine for development and tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet,
# kube-proxy and a cluster DNS (dnsmasq fed with the Services), the node advertising
# $GPU_COUNT `nvidia.com/gpu` (no real GPUs: pods asking for them schedule and run on the CPU).
# Needs root. Writes the kubeconfig to $KUBECONFIG_PATH. Undo everything with cluster-down.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $EUID -eq 0 ]] || die "cluster-up needs root (it runs containerd and the kubelet)"
for tool in etcd containerd runc ctr dnsmasq iptables openssl ip; do
  command -v "$tool" >/dev/null || die "$tool missing: apt-get install etcd-server containerd runc dnsmasq-base iptables openssl iproute2 containernetworking-plugins"
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] \
  || die "CNI plugins missing: apt-get install containernetworking-plugins"
# Idempotent: on a running cluster every step is a check, and a component that died restarts.

T0=$(date +%s)
bash "$CLUSTER_DIR/build.sh"
NODE_IP="$(node_ip)"
[[ -n "$NODE_IP" ]] || die "no non-loopback IPv4 address: the kubelet needs one (--node-ip)"
PKI="$RUN_DIR/pki"
mkdir -p "$RUN_DIR"/{pids,logs,pki,etcd,kubelet,cni/net.d,cni/ipam,containerd,dns}

# --- host state we change, recorded so cluster-down restores it exactly -----------------------
if [[ ! -f "$RUN_DIR/host-state" ]]; then
  {
    # Paths the kubelet, containerd and runc create outside $RUN_DIR, when they were absent.
    for path in "${HOST_PATHS[@]}"; do if [[ ! -e "$path" ]]; then echo "created=$path"; fi; done
    for ns in /var/run/netns/*; do if [[ -e "$ns" ]]; then echo "netns=$ns"; fi; done
    for key in "${SYSCTLS[@]}"; do
      if [[ -f "/proc/sys/$key" ]]; then echo "sysctl=$key $(cat "/proc/sys/$key")"; fi
    done
  } > "$RUN_DIR/host-state.tmp"
  iptables-save > "$RUN_DIR/iptables.before"
  ip6tables-save > "$RUN_DIR/ip6tables.before"
  mv "$RUN_DIR/host-state.tmp" "$RUN_DIR/host-state"
fi
# Pods reach Services through the bridge: br_netfilter must see bridged traffic, and the node
# forwards between the bridge and its own address.
echo 1 > /proc/sys/net/ipv4/ip_forward
if [[ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
fi

# --- certificates (one CA; every component a client certificate) -----------------------------
cert() {  # name CN O [serving SANs]
  local name=$1 cn=$2 org=$3 sans=${4:-}
  [[ -f "$PKI/$name.crt" ]] && return
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  local subj="/CN=$cn"; [[ -n "$org" ]] && subj="/O=$org$subj"
  local ext="$PKI/$name.ext"
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "$sans" ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$sans"
    else echo "extendedKeyUsage=clientAuth"; fi; } > "$ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
}
if [[ ! -f "$PKI/ca.crt" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
    -days 30 -subj "/CN=ml-platform-cluster-ca" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$NODE_NAME"
cert admin kubernetes-admin system:masters
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert controller-manager system:kube-controller-manager ""
cert scheduler system:kube-scheduler ""
cert kubelet "system:node:$NODE_NAME" system:nodes
cert kube-proxy system:kube-proxy ""

kubeconfig() {  # name -> $RUN_DIR/<name>.kubeconfig
  cat > "$RUN_DIR/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ml-platform-local
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
- name: ml-platform-local
  context: {cluster: ml-platform-local, user: $1, namespace: default}
current-context: ml-platform-local
KC
}
for c in admin controller-manager scheduler kubelet kube-proxy; do kubeconfig "$c"; done

start() {  # name command...: a background process with its pid file and log
  local name=$1; shift
  local pidfile="$RUN_DIR/pids/$name"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
  setsid "$@" >"$RUN_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}
wait_for() {  # description seconds command...
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || die "$what did not come up in ${secs}s; logs: $RUN_DIR/logs/"
    sleep 0.5
  done
}
KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$RUN_DIR/admin.kubeconfig")

# --- etcd and the control plane ---------------------------------------------------------------
start etcd etcd --name ml-platform --data-dir "$RUN_DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster ml-platform=http://127.0.0.1:2380 --quota-backend-bytes 2147483648
start kube-apiserver "$BIN_DIR/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 --insecure-port 0 \
  --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local
wait_for kube-apiserver 90 "${KUBECTL[@]}" get --raw /readyz
start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig "$RUN_DIR/controller-manager.kubeconfig" --leader-elect=false \
  --bind-address 127.0.0.1 --port 0 --use-service-account-credentials \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --allocate-node-cidrs=false --controllers '*,-nodeipam'
start kube-scheduler "$BIN_DIR/kube-scheduler" \
  --kubeconfig "$RUN_DIR/scheduler.kubeconfig" --leader-elect=false --bind-address 127.0.0.1 --port 0

# --- containerd: overlayfs, cgroupfs, and an oom_score_adj the sandbox allows -----------------
cat > "$RUN_DIR/containerd/config.toml" <<TOML
version = 2
root = "$RUN_DIR/containerd/root"
state = "$RUN_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This machine's sandbox cannot lower oom_score_adj: without this, every pod sandbox fails
  # with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN_DIR/cni/net.d"
TOML
cat > "$RUN_DIR/cni/net.d/10-ml-platform.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "ml-platform", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$RUN_DIR/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
start containerd containerd --config "$RUN_DIR/containerd/config.toml"
CTR=(ctr --address "$CONTAINERD_SOCK" -n k8s.io)
wait_for containerd 30 "${CTR[@]}" version
if ! "${CTR[@]}" images check "name==$PAUSE_IMAGE" 2>/dev/null | grep -q complete; then
  "${CTR[@]}" images import "$PAUSE_TAR" >/dev/null
fi

# --- cluster DNS: dnsmasq answers *.cluster.local from the Services, forwards the rest ---------
touch "$RUN_DIR/dns/hosts"
UPSTREAM="$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf)"
start dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
  --listen-address "$NODE_IP" --port 53 --pid-file="$RUN_DIR/dns/dnsmasq.pid" \
  --addn-hosts "$RUN_DIR/dns/hosts" --local=/cluster.local/ --domain-needed \
  ${UPSTREAM:+--server=$UPSTREAM} --log-facility=-
start dns-feeder python3 "$CLUSTER_DIR/dns_feeder.py" --kubectl "$BIN_DIR/kubectl" \
  --kubeconfig "$RUN_DIR/admin.kubeconfig" --hosts "$RUN_DIR/dns/hosts" \
  --dnsmasq-pidfile "$RUN_DIR/pids/dnsmasq"

# --- kubelet and kube-proxy -------------------------------------------------------------------
cat > "$RUN_DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
clusterDomain: cluster.local
clusterDNS: ["$NODE_IP"]
resolvConf: /etc/resolv.conf
failSwapOn: false
tlsCertFile: "$PKI/apiserver.crt"
tlsPrivateKeyFile: "$PKI/apiserver.key"
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
YAML
start kubelet "$BIN_DIR/kubelet" --config "$RUN_DIR/kubelet/config.yaml" \
  --kubeconfig "$RUN_DIR/kubelet.kubeconfig" --root-dir "$RUN_DIR/kubelet/root" \
  --container-runtime remote --container-runtime-endpoint "unix://$CONTAINERD_SOCK" \
  --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --pod-infra-container-image "$PAUSE_IMAGE"
start kube-proxy "$BIN_DIR/kube-proxy" --kubeconfig "$RUN_DIR/kube-proxy.kubeconfig" \
  --hostname-override "$NODE_NAME" --cluster-cidr "$POD_CIDR" --proxy-mode iptables \
  --conntrack-max-per-core 0 --conntrack-min 0 \
  --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
  --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256

wait_for "node $NODE_NAME" 90 "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout 2s

# --- 2 advertised GPUs: an extended resource in the node's status capacity ---------------------
# kubectl 1.20 cannot patch a status subresource: the API is called directly.
wait_for "GPU capacity" 30 curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
  -X PATCH -H 'Content-Type: application/json-patch+json' \
  --data "[{\"op\": \"add\", \"path\": \"/status/capacity/nvidia.com~1gpu\", \"value\": \"$GPU_COUNT\"}]" \
  "https://$NODE_IP:6443/api/v1/nodes/$NODE_NAME/status"
wait_for "allocatable GPUs" 30 bash -c "[[ \"\$(${KUBECTL[*]} get node $NODE_NAME -o jsonpath='{.status.allocatable.nvidia\.com/gpu}')\" == $GPU_COUNT ]]"
# The default ServiceAccount must exist before pods can be created in a namespace.
wait_for "default service account" 60 "${KUBECTL[@]}" get serviceaccount default

mkdir -p "$(dirname "$KUBECONFIG_PATH")"
cp "$RUN_DIR/admin.kubeconfig" "$KUBECONFIG_PATH"
log "up in $(( $(date +%s) - T0 ))s: node $NODE_NAME ($NODE_IP), $GPU_COUNT nvidia.com/gpu advertised"
log "export KUBECONFIG=$KUBECONFIG_PATH   (kubectl: $BIN_DIR/kubectl)"
