#!/usr/bin/env bash
# scripts/k8s/build.sh [OUT_DIR]
# Builds kube-apiserver + kubectl (k8s $K8S_VERSION), etcd ($ETCD_VERSION) and helm ($HELM_VERSION)
# from the Go module proxy, for the e2e tests (no kubelet: the tests start shard/router processes themselves).
# Binaries are cached in ~/.cache/agent-runtime/k8s/<k8s>-etcd-<etcd>/ and reused (stamp file), so
# later runs on the same machine cost nothing. Prints the binary folder on its last line.
# Pinned wrapper modules (go.mod/go.sum) live next to this script; when present, the build uses them
# instead of re-tidying. Set K8S_BUILD_KCM=1 to also build kube-controller-manager.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${AGENT_RUNTIME_K8S_BIN:-$HOME/.cache/agent-runtime/k8s/$K8S_VERSION-etcd-$ETCD_VERSION}}
OUT=$(realpath -m "$OUT"); mkdir -p "$OUT"
HELM_VERSION=${HELM_VERSION:-v3.22.0}
KCM=${K8S_BUILD_KCM:-0}
STAMP="$OUT/.built-$K8S_VERSION-$ETCD_VERSION-kcm$KCM"
HELM_STAMP="$OUT/.built-helm-$HELM_VERSION"
if [ -f "$STAMP" ] && [ -f "$HELM_STAMP" ]; then echo "k8s binaries up to date in $OUT" >&2; echo "$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build.sh: Go toolchain not found (need go >= 1.26)" >&2; exit 1; }
exec 9>"$OUT/.build.lock"
flock 9  # two concurrent builds (two worktrees, two test runs) wait for each other
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
export GOMODCACHE=${GOMODCACHE:-$HOME/go/pkg/mod} GOCACHE=${GOCACHE:-$HOME/.cache/go-build}
# ---- helm (renders charts/agent-runtime in the tests); its module has no replace directives
if [ ! -f "$HELM_STAMP" ]; then
  T0=$(date +%s)
  GOBIN="$OUT" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$HELM_STAMP"
  echo "helm $HELM_VERSION built in $(( $(date +%s) - T0 ))s" >&2
fi
if [ -f "$STAMP" ]; then echo "k8s binaries up to date in $OUT" >&2; echo "$OUT"; exit 0; fi
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
ts() { date +%s; }
T0=$(ts)

# ---- etcd: server/v3 has replace directives -> wrapper module pinning all etcd modules
mkdir -p "$WORK/etcd"; cd "$WORK/etcd"
printf '//go:build tools\npackage tools\nimport (\n\t_ "go.etcd.io/etcd/server/v3"\n)\n' > tools.go
if [ -f "$HERE/etcd-wrapper.go.mod" ] && grep -q "server/v3 $ETCD_VERSION" "$HERE/etcd-wrapper.go.mod"; then
  cp "$HERE/etcd-wrapper.go.mod" go.mod; cp "$HERE/etcd-wrapper.go.sum" go.sum
  go mod download
else
  cat > go.mod <<M
module etcdbuild
go 1.26.0
require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
M
  go mod tidy
fi
go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
echo "etcd $ETCD_VERSION built at +$(( $(ts) - T0 ))s" >&2

# ---- kubernetes: replace every staging module (required at v0.0.0) by its published v0.X.Y
mkdir -p "$WORK/k8s"; cd "$WORK/k8s"
PKGS="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl"
[ "$KCM" = 1 ] && PKGS="$PKGS k8s.io/kubernetes/cmd/kube-controller-manager"
{
  printf '//go:build tools\npackage tools\nimport (\n'
  for p in $PKGS; do printf '\t_ "%s"\n' "$p"; done
  [ "$KCM" = 1 ] && printf '\t_ "github.com/container-storage-interface/spec/lib/go/csi"\n'
  printf ')\n'
} > tools.go
if [ "$KCM" = 0 ] && [ -f "$HERE/k8s-wrapper.go.mod" ] && grep -q "k8s.io/kubernetes $K8S_VERSION" "$HERE/k8s-wrapper.go.mod"; then
  cp "$HERE/k8s-wrapper.go.mod" go.mod; cp "$HERE/k8s-wrapper.go.sum" go.sum
  go mod download
else
  printf 'module k8sbuild\n\ngo 1.26.0\n' > go.mod
  KMOD=$(go list -m -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import sys,json;print(json.load(sys.stdin)["GoMod"])')
  SVER=v0.${K8S_VERSION#v1.}
  {
    printf 'module k8sbuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    grep -E '^\s+k8s.io/[a-z0-9-]+ v0\.0\.0$' "$KMOD" | awk -v v="$SVER" '{printf "\t%s => %s %s\n", $1, $1, v}'
    printf ')\n'
  } > go.mod
  go mod tidy
fi
MINOR=${K8S_VERSION#v1.}; MINOR=${MINOR%%.*}
LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF="$LDF -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
done
# shellcheck disable=SC2086
go build -trimpath -ldflags "$LDF" -o "$OUT/" $PKGS
echo "kubernetes $K8S_VERSION built at +$(( $(ts) - T0 ))s" >&2
cp "$WORK/k8s/go.mod" "$OUT/k8s-wrapper.go.mod"; cp "$WORK/k8s/go.sum" "$OUT/k8s-wrapper.go.sum"
cp "$WORK/etcd/go.mod" "$OUT/etcd-wrapper.go.mod"; cp "$WORK/etcd/go.sum" "$OUT/etcd-wrapper.go.sum"
touch "$STAMP"
echo "k8s binaries built in $(( $(ts) - T0 ))s into $OUT" >&2
echo "$OUT"
