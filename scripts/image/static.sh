#!/usr/bin/env bash
# scripts/image/static.sh NODE_BIN : the two images made of one static binary each, built offline
# (`podman build --network none` FROM scratch) and saved for `ctr images import`:
#   localhost/pause:<hash>    the pod sandbox (containerd's sandbox_image)
#   localhost/traefik:<hash>  the Ingress controller (scripts/cluster/traefik.yaml)
# Tags are content hashes of the binaries. Writes both names to a file (pause first) and prints its
# path on the last line.
set -euo pipefail
BIN=$(realpath "$1")
CACHE=${AGENT_RUNTIME_CACHE:-$HOME/.cache/agent-runtime}/image
mkdir -p "$CACHE"
exec 9>"$CACHE/.static.lock"; flock 9
OUT=$CACHE/static-images.txt; : > "$OUT.tmp"
for name in pause traefik; do
  [ -x "$BIN/$name" ] || { echo "static.sh: $BIN/$name missing (scripts/k8s/build-node.sh)" >&2; exit 1; }
  tag=$(sha256sum "$BIN/$name" | cut -c1-16); img=localhost/$name:$tag; tar=$CACHE/$name-$tag.tar
  if ! podman image exists "$img" || [ ! -f "$tar" ]; then
    ctx=$(mktemp -d); cp "$BIN/$name" "$ctx/$name"
    printf 'FROM scratch\nCOPY %s /%s\nUSER 65532:65532\nENTRYPOINT ["/%s"]\n' "$name" "$name" "$name" > "$ctx/Containerfile"
    podman build -q --network none -t "$img" "$ctx" >/dev/null
    rm -rf "$ctx"; podman save -q -o "$tar.tmp" "$img" && mv "$tar.tmp" "$tar"
  fi
  echo "$img" >> "$OUT.tmp"
done
mv "$OUT.tmp" "$OUT"
echo "$OUT"
