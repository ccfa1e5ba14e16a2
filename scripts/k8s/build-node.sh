#!/usr/bin/env bash
# scripts/k8s/build-node.sh [OUT_DIR]
# Builds what a real single-node cluster needs beyond scripts/k8s/build.sh (kube-apiserver, etcd,
# kubectl, helm), all from the Go module proxy, for `make cluster` and tests/cluster:
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy   (k8s $K8S_VERSION)
#   coredns                                                        ($COREDNS_VERSION)
#   traefik (the Ingress controller, run as pods)                  ($TRAEFIK_VERSION)
#   pause (the sandbox process of every pod: a 20-line static Go program written here)
# Each part has its own stamp in ~/.cache/agent-runtime/k8s/node-<k8s>/ and is skipped when built.
# Long and CPU-heavy on a cold Go cache (kubelet ~15 min on 2 busy cores): run it under `nice`.
# Prints the binary folder on its last line.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.36.3}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
TRAEFIK_VERSION=${TRAEFIK_VERSION:-v3.7.13}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${AGENT_RUNTIME_NODE_BIN:-$HOME/.cache/agent-runtime/k8s/node-$K8S_VERSION}}
OUT=$(realpath -m "$OUT"); mkdir -p "$OUT"
command -v go >/dev/null || { echo "build-node.sh: Go toolchain not found (need go >= 1.26)" >&2; exit 1; }
PARTS=${BUILD_NODE_PARTS:-pause coredns traefik k8s}   # a subset may run in parallel with another
want() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
lock() { exec 9>"$OUT/.build-$1.lock"; flock 9; }  # one builder per part (two checkouts, two runs)
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false  # CGO as build.sh (shares its Go build cache)
export GOMODCACHE=${GOMODCACHE:-$HOME/go/pkg/mod} GOCACHE=${GOCACHE:-$HOME/.cache/go-build}
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)
say() { echo "build-node: $* (+$(( $(date +%s) - T0 ))s)" >&2; }

# ---- pause: blocks until SIGTERM/SIGINT, reaps children (it is PID 1 of the pod sandbox)
if want pause && lock pause && [ ! -f "$OUT/.built-pause" ]; then
  mkdir -p "$WORK/pause"; cd "$WORK/pause"
  printf 'module pause\n\ngo 1.26.0\n' > go.mod
  cat > main.go <<'GO'
// pause: the sandbox process of a pod. Sleeps until SIGINT/SIGTERM; reaps zombies (PID 1).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
GO
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/pause" .  # static: runs in an empty image
  touch "$OUT/.built-pause"; say "pause built"
fi

# ---- coredns: its module has no replace directives
if want coredns && lock coredns && [ ! -f "$OUT/.built-coredns-$COREDNS_VERSION" ]; then
  GOBIN="$OUT" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  touch "$OUT/.built-coredns-$COREDNS_VERSION"; say "coredns $COREDNS_VERSION built"
fi

# ---- traefik: its go.mod has replace directives (so no `go install`), a nested module
# (pkg/config/dynamic/ext, not in the module zip) and embeds webui/static (built by npm upstream).
# Build it as the main module from a copy of the module zip: the nested module is two empty
# extension structs (written below), the web UI gets a placeholder page (the dashboard is off).
# The module proxy reachable here serves neither the containous fork of go-http-auth nor the SDKs of
# six ACME DNS providers of lego (edgedns, huaweicloud, oraclecloud, sakuracloud, ucloud,
# yandexcloud): upstream go-http-auth v0.4.0 is used with a small shim for the two fork-only calls
# (basic-auth secret check through upstream's CheckAuth; digest "stale" answered as a plain
# challenge), and lego is a copy without those six providers. Neither matters for an Ingress
# controller of HTTP/WebSocket routes; both are said in docs/cluster.md.
if want traefik && lock traefik && [ ! -f "$OUT/.built-traefik-$TRAEFIK_VERSION" ]; then
  moddir() { go mod download -json "$1" | python3 -c 'import sys,json;print(json.load(sys.stdin)["Dir"])'; }
  cp -r "$(moddir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")" "$WORK/traefik"; chmod -R u+w "$WORK/traefik"
  cd "$WORK/traefik"
  mkdir -p webui/static pkg/config/dynamic/ext
  echo '<!doctype html><title>traefik</title><p>dashboard not built</p>' > webui/static/index.html
  printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' > pkg/config/dynamic/ext/go.mod
  printf '// Package ext: the extension points of dynamic.HTTP and dynamic.Router (empty upstream).\npackage ext\n\ntype HTTP struct{}\n\ntype Router struct{}\n' \
    > pkg/config/dynamic/ext/ext.go
  # go-http-auth: upstream instead of the fork
  go mod edit -dropreplace github.com/abbot/go-http-auth -require github.com/abbot/go-http-auth@v0.4.0
  go mod download github.com/abbot/go-http-auth
  cat > pkg/middlewares/auth/zz_goauth_compat.go <<'GO'
package auth

import (
	"net/http"

	goauth "github.com/abbot/go-http-auth"
)

// checkSecretCompat is the fork's goauth.CheckSecret, through upstream's BasicAuth.CheckAuth.
func checkSecretCompat(password, secret string) bool {
	a := &goauth.BasicAuth{Secrets: func(string, string) string { return secret }}
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth("u", password)
	return a.CheckAuth(r) == "u"
}
GO
  sed -i 's/goauth\.CheckSecret/checkSecretCompat/' pkg/middlewares/auth/basic_auth.go
  sed -i 's/d\.auth\.RequireAuthStale(rw, req)/d.auth.RequireAuth(rw, req)/' pkg/middlewares/auth/digest_auth.go
  # lego without the six providers whose SDKs are not served
  LEGO=$(go list -m -f '{{.Version}}' github.com/go-acme/lego/v5)
  cp -r "$(moddir "github.com/go-acme/lego/v5@$LEGO")" "$WORK/lego"; chmod -R u+w "$WORK/lego"
  ( cd "$WORK/lego/providers/dns" && rm -f dns_providers_test.go
    for p in edgedns huaweicloud oraclecloud sakuracloud ucloud yandexcloud; do
      rm -rf "$p"; sed -i "\|\"github.com/go-acme/lego/v5/providers/dns/$p\"|d; /return $p\.NewDNSProvider()/d" zz_gen_dns_providers.go
    done
    # a `case` whose return was removed would fall into the next case: drop it
    awk '{l[NR]=$0} END {for (i=1; i<=NR; i++) { if (l[i] ~ /^[ \t]*case / && l[i+1] ~ /^[ \t]*(case |default)/) continue; print l[i] }}' \
      zz_gen_dns_providers.go > z.tmp && mv z.tmp zz_gen_dns_providers.go )
  go mod edit -replace "github.com/go-acme/lego/v5=$WORK/lego"
  V=github.com/traefik/traefik/v3/pkg/version
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X $V.Version=$TRAEFIK_VERSION -X $V.Codename=agent-runtime" \
    -o "$OUT/traefik" ./cmd/traefik
  touch "$OUT/.built-traefik-$TRAEFIK_VERSION"; say "traefik $TRAEFIK_VERSION built"
fi

# ---- kubelet, kube-controller-manager, kube-scheduler, kube-proxy: the wrapper-module method of
# build.sh (every staging module required at v0.0.0 replaced by its published v0.X.Y).
STAMP="$OUT/.built-k8s-$K8S_VERSION"
if want k8s && lock k8s && [ ! -f "$STAMP" ]; then
  mkdir -p "$WORK/k8s"; cd "$WORK/k8s"
  PKGS="k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-controller-manager"
  {
    printf '//go:build tools\npackage tools\nimport (\n'
    for p in $PKGS; do printf '\t_ "%s"\n' "$p"; done
    printf '\t_ "github.com/container-storage-interface/spec/lib/go/csi"\n)\n'
  } > tools.go
  if [ -f "$HERE/node-wrapper.go.mod" ] && grep -q "k8s.io/kubernetes $K8S_VERSION" "$HERE/node-wrapper.go.mod"; then
    cp "$HERE/node-wrapper.go.mod" go.mod; cp "$HERE/node-wrapper.go.sum" go.sum
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
  cp go.mod "$OUT/node-wrapper.go.mod"; cp go.sum "$OUT/node-wrapper.go.sum"
  touch "$STAMP"; say "kubelet, kube-proxy, kube-scheduler, kube-controller-manager $K8S_VERSION built"
fi
say "node binaries up to date in $OUT"
echo "$OUT"
