#!/usr/bin/env bash
# scripts/cluster/up.sh : `make cluster`, a real single-node Kubernetes cluster on this machine (root),
# with the chart installed from the local image behind a Traefik Ingress.
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables),
#   CoreDNS (kubernetes plugin only: no forwarding) run as host processes; containerd + runc + the
#   CNI bridge plugin (Debian packages) run the pods. Binaries and images are built once and cached
#   under ~/.cache/agent-runtime/ (scripts/k8s/build.sh, build-node.sh, scripts/image/build.sh).
#
# Every packet stays on this machine: the node IP, pods and services live in CLUSTER_CIDR on two
# bridges made here; pods get no default route; an iptables chain drops anything from or to the
# cluster ranges that would cross any other interface. What the machine looked like before
# (sysctls, iptables, links, mounts, cgroups) is recorded in $STATE/before; scripts/cluster/down.sh
# (`make cluster-down`) stops everything and restores it. Prints how to attach at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"
[ "$(id -u)" = 0 ] || { echo "make cluster: needs root (containerd, kubelet, bridges, iptables)" >&2; exit 1; }
if [ -f "$PIDS/kubelet.pid" ] && kill -0 "$(cat "$PIDS/kubelet.pid")" 2>/dev/null; then
  echo "a cluster is already up (state in $STATE); make cluster-down first" >&2; exit 1
fi
T0=$(date +%s.%N)
el() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$1" "$(date +%s.%N)"; }
say() { echo "cluster: $* (+$(el "$T0"))" >&2; }
bash "$HERE/deps.sh"

# ---- binaries and images (cached; cold: see docs/cluster.md)
K8S_BIN=$(bash "$ROOT/scripts/k8s/build.sh" | tail -1)
NODE_BIN=$(nice -n 19 bash "$ROOT/scripts/k8s/build-node.sh" | tail -1)
IMAGE=$(bash "$ROOT/scripts/image/build.sh" | tail -1)
STATIC=$(bash "$ROOT/scripts/image/static.sh" "$NODE_BIN" | tail -1)   # pause + traefik images
PAUSE_IMAGE=$(sed -n 1p "$STATIC"); TRAEFIK_IMAGE=$(sed -n 2p "$STATIC")
export PATH="$K8S_BIN:$NODE_BIN:$PATH"
say "binaries and images ready ($IMAGE)"
T1=$(date +%s.%N)

# ---- the before-state (kept if a previous bring-up failed half-way: down.sh restores the first)
mkdir -p "$STATE" "$RUNDIR" "$LOGS" "$PIDS"
if [ ! -f "$BEFORE/complete" ]; then
  mkdir -p "$BEFORE"
  sysctl -a 2>/dev/null | LC_ALL=C sort > "$BEFORE/sysctl.txt" || true
  iptables-save > "$BEFORE/iptables.v4"; ip6tables-save > "$BEFORE/iptables.v6"
  ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | LC_ALL=C sort > "$BEFORE/links.txt"
  awk '{print $5}' /proc/self/mountinfo | LC_ALL=C sort > "$BEFORE/mounts.txt"
  ls -1 /run/netns 2>/dev/null | LC_ALL=C sort > "$BEFORE/netns.txt" || true
  find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d 2>/dev/null | LC_ALL=C sort > "$BEFORE/cgroups.txt"
  for p in /var/log/pods /var/log/containers /run/netns /etc/cni /var/lib/cni /run/containerd /var/lib/kubelet; do
    [ -e "$p" ] && echo "$p"
  done > "$BEFORE/paths.txt" || true
  touch "$BEFORE/complete"
fi

# ---- network: two bridges, routes to local devices only, the egress drop rule
ip link show "$NODE_BR" >/dev/null 2>&1 || ip link add "$NODE_BR" type bridge
ip addr replace "$NODE_IP/32" dev "$NODE_BR"; ip link set "$NODE_BR" up
ip link show "$POD_BR" >/dev/null 2>&1 || ip link add "$POD_BR" type bridge
ip addr replace "$POD_GW/24" dev "$POD_BR"; ip link set "$POD_BR" up
ip route replace "$CLUSTER_CIDR" dev "$NODE_BR" src "$NODE_IP"   # services and the rest: a local device
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
for c in AR-OUT AR-IN; do iptables -N "$c" 2>/dev/null || iptables -F "$c"; done
for dev in lo "$NODE_BR" "$POD_BR"; do iptables -A AR-OUT -o "$dev" -j RETURN; iptables -A AR-IN -i "$dev" -j RETURN; done
iptables -A AR-OUT -j DROP; iptables -A AR-IN -j DROP
iptables -C OUTPUT -s "$CLUSTER_CIDR" -j AR-OUT 2>/dev/null || iptables -I OUTPUT -s "$CLUSTER_CIDR" -j AR-OUT
iptables -C FORWARD -s "$CLUSTER_CIDR" -j AR-OUT 2>/dev/null || iptables -I FORWARD -s "$CLUSTER_CIDR" -j AR-OUT
iptables -C FORWARD -d "$CLUSTER_CIDR" -j AR-IN 2>/dev/null || iptables -I FORWARD -d "$CLUSTER_CIDR" -j AR-IN
# pods have no IPv6 addresses but link-local ones: nothing IPv6 is forwarded from or to them
ip6tables -C FORWARD -i "$POD_BR" -j DROP 2>/dev/null || ip6tables -I FORWARD -i "$POD_BR" -j DROP
ip6tables -C FORWARD -o "$POD_BR" -j DROP 2>/dev/null || ip6tables -I FORWARD -o "$POD_BR" -j DROP
say "network: $NODE_BR $NODE_IP, $POD_BR $POD_CIDR, egress drop for $CLUSTER_CIDR"

# ---- PKI: a CA, serving certs, static tokens per component (each its own identity, RBAC applies)
P=$STATE/pki; mkdir -p "$P"
if [ ! -f "$P/ca.crt" ]; then
  ( cd "$P"
    o() { openssl "$@" >/dev/null 2>&1; }
    o genrsa -out ca.key 2048
    o req -x509 -new -nodes -key ca.key -sha256 -days 365 -subj /CN=agent-runtime-cluster-ca -out ca.crt
    cert() {  # name CN O SANs
      o genrsa -out "$1.key" 2048
      printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n%s\n' \
        "${4:+subjectAltName=$4}" > "$1.ext"
      o req -new -key "$1.key" -subj "/CN=$2${3:+/O=$3}" -out "$1.csr"
      o x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 -extfile "$1.ext" -out "$1.crt"
    }
    cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$API_SVC_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
    cert kubelet "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
    o genrsa -out sa.key 2048; o rsa -in sa.key -pubout -out sa.pub
    t() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    { echo "$(t),admin,admin,system:masters"
      echo "$(t),system:node:$NODE_NAME,kubelet,system:nodes"
      echo "$(t),system:kube-controller-manager,kcm"
      echo "$(t),system:kube-scheduler,scheduler"
      echo "$(t),system:kube-proxy,kube-proxy"
      echo "$(t),agent-runtime:coredns,coredns"; } > tokens.csv
    chmod 600 ./*.key tokens.csv )
fi
kubeconfig() {  # file user
  local tok; tok=$(awk -F, -v u="$2" '$2==u {print $1}' "$P/tokens.csv")
  cat > "$1" <<K
apiVersion: v1
kind: Config
clusters:
- name: agent-runtime
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: $P/ca.crt}
users:
- name: $2
  user: {token: $tok}
contexts:
- name: agent-runtime
  context: {cluster: agent-runtime, user: "$2", namespace: $NAMESPACE}
current-context: agent-runtime
K
  chmod 600 "$1"
}
kubeconfig "$KUBECONFIG_ADMIN" admin
kubeconfig "$P/kubelet.kubeconfig" "system:node:$NODE_NAME"
kubeconfig "$P/kcm.kubeconfig" system:kube-controller-manager
kubeconfig "$P/scheduler.kubeconfig" system:kube-scheduler
kubeconfig "$P/proxy.kubeconfig" system:kube-proxy
kubeconfig "$P/coredns.kubeconfig" agent-runtime:coredns
export KUBECONFIG=$KUBECONFIG_ADMIN

start() {  # name command... : a host process, its own session, logged and recorded by PID
  local name=$1; shift
  setsid "$@" > "$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}
wait_for() {  # what timeout_s command...
  local what=$1 timeout=$2; shift 2
  local end=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "cluster: timed out waiting for $what" >&2; return 1; }
    sleep 0.3
  done
}

# ---- control plane
start etcd "$K8S_BIN/etcd" --name node --data-dir "$STATE/etcd" \
  --listen-client-urls "http://$NODE_IP:2379" --advertise-client-urls "http://$NODE_IP:2379" \
  --listen-peer-urls "http://$NODE_IP:2380" --initial-advertise-peer-urls "http://$NODE_IP:2380" \
  --initial-cluster "node=http://$NODE_IP:2380" --unsafe-no-fsync
wait_for etcd 30 curl -fsS "http://$NODE_IP:2379/health"
start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers "http://$NODE_IP:2379" --bind-address "$NODE_IP" --advertise-address "$NODE_IP" \
  --secure-port "$API_PORT" --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
  --client-ca-file "$P/ca.crt" --token-auth-file "$P/tokens.csv" \
  --kubelet-client-certificate "$P/apiserver-kubelet-client.crt" --kubelet-client-key "$P/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$P/ca.crt" --kubelet-preferred-address-types InternalIP \
  --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-cluster-ip-range "$SVC_CIDR" --allow-privileged=false --cert-dir "$STATE/apiserver-certs"
wait_for kube-apiserver 60 kubectl get --raw /readyz
say "apiserver ready"
start kube-controller-manager "$NODE_BIN/kube-controller-manager" --kubeconfig "$P/kcm.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --use-service-account-credentials=true \
  --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
  --service-cluster-ip-range "$SVC_CIDR" --cluster-cidr "$POD_CIDR" --allocate-node-cidrs=false
start kube-scheduler "$NODE_BIN/kube-scheduler" --kubeconfig "$P/scheduler.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 0

# ---- containerd + CNI: state under $STATE/$RUNDIR, sandbox image imported here
mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam" "$RUNDIR/containerd"
cat > "$STATE/cni/net.d/10-agent-runtime.conflist" <<J
{"cniVersion": "1.0.0", "name": "agent-runtime", "plugins": [
  {"type": "bridge", "bridge": "$POD_BR", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
            "routes": [{"dst": "$CLUSTER_CIDR", "gw": "$POD_GW"}]}}]}
J
cat > "$STATE/containerd.toml" <<T
version = 2
root = "$STATE/containerd/root"
state = "$RUNDIR/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
T
start containerd containerd --config "$STATE/containerd.toml"
wait_for containerd 30 ctr --address "$CTR_SOCK" version
for img in "$IMAGE" "$PAUSE_IMAGE" "$TRAEFIK_IMAGE"; do
  tag=${img##*:}; name=${img%:*}; name=${name##*/}
  ctr --address "$CTR_SOCK" -n k8s.io images import "$CACHE/image/$name-$tag.tar" >/dev/null
done
say "containerd up, images imported"

# ---- kubelet, kube-proxy, CoreDNS
mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
echo "# cluster DNS only: kubelet adds nameserver $NODE_IP; no upstream" > "$STATE/resolv.conf"
cat > "$STATE/kubelet.yaml" <<Y
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: $NODE_IP
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $P/kubelet.crt
tlsPrivateKeyFile: $P/kubelet.key
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $STATE/resolv.conf
podLogsDir: $STATE/pod-logs
maxPods: 100
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: 200Mi, nodefs.available: "1%", imagefs.available: "1%"}
Y
start kubelet "$NODE_BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$P/kubelet.kubeconfig" \
  --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
cat > "$STATE/kube-proxy.yaml" <<Y
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $P/proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
Y
start kube-proxy "$NODE_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
kubectl apply -f - >/dev/null <<Y
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "agent-runtime:coredns"}
rules:
- {apiGroups: [""], resources: [services, namespaces, pods], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "agent-runtime:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "agent-runtime:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "agent-runtime:coredns"}]
Y
cat > "$STATE/Corefile" <<C
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $P/coredns.kubeconfig agent-runtime
        pods insecure
        ttl 5
    }
}
C
start coredns "$NODE_BIN/coredns" -conf "$STATE/Corefile"
wait_for "node Ready" 120 sh -c "kubectl get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
say "node $NODE_NAME Ready"

# ---- storage: no provisioner here; `pv NS CLAIM` makes a hostPath PV bound to exactly that claim
# (tests/cluster does the same for its own namespaces)
pv() {
  local d=$STATE/volumes/$1-$2
  mkdir -p "$d"; chown 10001:10001 "$d"; chmod 0770 "$d"
  kubectl apply -f - >/dev/null <<Y
apiVersion: v1
kind: PersistentVolume
metadata: {name: "$1-$2", labels: {agentruntime.dev/cluster-volume: "true"}}
spec:
  capacity: {storage: 50Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: "$1", name: "$2"}
  hostPath: {path: "$d", type: Directory}
Y
}

# ---- Traefik (the Ingress controller) and the chart, both in `restricted` namespaces
for ns in "$INGRESS_NAMESPACE" "$NAMESPACE"; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label --overwrite namespace "$ns" pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/warn=restricted >/dev/null
done
sed -e "s|@IMAGE@|$TRAEFIK_IMAGE|g" -e "s|@NAMESPACE@|$INGRESS_NAMESPACE|g" -e "s|@NODEPORT@|$INGRESS_NODEPORT|g" \
  "$HERE/traefik.yaml" | kubectl apply -f - >/dev/null
kubectl -n "$INGRESS_NAMESPACE" rollout status deploy/traefik --timeout 120s >/dev/null
say "Traefik Ready"
if [ "${AGENT_RUNTIME_CLUSTER_CHART:-1}" = 0 ]; then
  echo "bring-up without the chart (binaries and images cached): $(el "$T1")" > "$STATE/bringup.txt"
  say "up without the chart (AGENT_RUNTIME_CLUSTER_CHART=0)"; exit 0
fi
pv "$NAMESPACE" local-data
helm upgrade --install agent-runtime "$ROOT/charts/agent-runtime" --namespace "$NAMESPACE" \
  --kubeconfig "$KUBECONFIG_ADMIN" -f "$HERE/values.yaml" \
  --set "watchNamespaces={$NAMESPACE}" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --wait --timeout 5m >/dev/null
say "chart installed: operator and routers Ready"
kubectl -n "$NAMESPACE" apply -f "$HERE/hello-agent.yaml" >/dev/null
wait_for "Agent hello Running" 120 sh -c "kubectl -n $NAMESPACE get agent hello -o jsonpath='{.status.phase}' | grep -qE 'Running|Idle'"
say "Agent hello $(kubectl -n "$NAMESPACE" get agent hello -o jsonpath='{.status.phase}') on $(kubectl -n "$NAMESPACE" get agent hello -o jsonpath='{.status.shard}')"
echo "bring-up (binaries and images cached): $(el "$T1")" > "$STATE/bringup.txt"
AGENTCTL=agentctl; [ -x "$ROOT/.venv/bin/agentctl" ] && AGENTCTL=$ROOT/.venv/bin/agentctl   # make setup
cat <<EOF

The cluster is up ($(el "$T1") after the cached builds). Attach through the Ingress (Traefik):

  export KUBECONFIG=$KUBECONFIG_ADMIN PATH=$K8S_BIN:\$PATH
  TOKEN=\$(kubectl -n $NAMESPACE get secret local-admin-token -o jsonpath='{.data.admin\.token}' | base64 -d)
  $AGENTCTL --server http://$NODE_IP:$INGRESS_NODEPORT --token "\$TOKEN" attach $NAMESPACE/hello

  kubectl get agents,runtimepools,pods -A
  make cluster-down        # stops everything and restores sysctls, iptables, links, mounts
EOF
