# scripts/cluster/env.sh : the names, ranges and folders of the `make cluster` single-node cluster,
# sourced by up.sh, down.sh and tests/cluster. Every address is in CLUSTER_CIDR and lives on a
# device this cluster creates; nothing listens on or sends to the machine's own interfaces.
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CACHE=${AGENT_RUNTIME_CACHE:-$HOME/.cache/agent-runtime}
STATE=${AGENT_RUNTIME_CLUSTER_STATE:-/var/lib/agent-runtime-cluster}   # etcd, containerd, kubelet, PVs
RUNDIR=${AGENT_RUNTIME_CLUSTER_RUN:-/run/agent-runtime-cluster}        # sockets, containerd state
BEFORE=$STATE/before                                                   # what down.sh restores
LOGS=$STATE/logs
PIDS=$STATE/pids
K8S_VERSION=${K8S_VERSION:-v1.36.3}

CLUSTER_CIDR=10.213.0.0/16      # everything below; the egress rule drops it on any other interface
NODE_IP=10.213.0.1              # on the bridge arnode0 (this kernel has no dummy links)
NODE_BR=arnode0
POD_CIDR=10.213.64.0/24         # CNI bridge arcni0, gateway .1; pods get no default route
POD_GW=10.213.64.1
POD_BR=arcni0
SVC_CIDR=10.213.128.0/24
API_SVC_IP=10.213.128.1
NODE_NAME=agent-runtime-node
API_PORT=6443
INGRESS_NODEPORT=30080          # Traefik's web entry point, on NODE_IP only
NAMESPACE=${AGENT_RUNTIME_CLUSTER_NAMESPACE:-agent-runtime}
INGRESS_NAMESPACE=ingress
CTR_SOCK=$RUNDIR/containerd/containerd.sock
KUBECONFIG_ADMIN=$STATE/pki/admin.kubeconfig
