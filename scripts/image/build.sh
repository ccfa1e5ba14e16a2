#!/usr/bin/env bash
# scripts/image/build.sh : `make image`, the project's image built with no network inside the build.
#   base   scripts/image/base.sh   (debootstrap'ed Debian bookworm + python3; cached by its content)
#   wheels scripts/image/wheels.sh (maturin + pip wheel on the host; cached cargo target and deps)
#   image  podman build --network none -f scripts/image/Containerfile (pip install --no-index)
# The tag is the hash of the inputs (the tracked and untracked-but-not-ignored files of the
# package sources, the lock files and these scripts): an unchanged tree costs nothing. The image is
# also saved as ~/.cache/agent-runtime/image/agent-runtime-<hash>.tar (for `ctr images import`).
# Prints the image name, localhost/agent-runtime:<hash>, on its last line; the same name is written
# to ~/.cache/agent-runtime/image/latest.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_RUNTIME_CACHE:-$HOME/.cache/agent-runtime}
mkdir -p "$CACHE/image"
for t in podman debootstrap; do
  command -v $t >/dev/null || { echo "image: needs $t: apt-get install podman debootstrap (or scripts/cluster/deps.sh)" >&2; exit 1; }
done
key() {
  cd "$ROOT"
  git ls-files -co --exclude-standard -- pyproject.toml README.md native agent_runtime mock_providers operator scripts/image \
    | grep -v -E '^native/(target|fuzz/target)/' | LC_ALL=C sort \
    | while read -r f; do [ -f "$f" ] && printf '%s %s\n' "$(sha256sum < "$f" | cut -c1-64)" "$f"; done \
    | sha256sum | cut -c1-16
}
KEY=$(key)
IMAGE=localhost/agent-runtime:$KEY
TAR=$CACHE/image/agent-runtime-$KEY.tar
exec 9>"$CACHE/image/.build.lock"; flock 9
if podman image exists "$IMAGE" && [ -f "$TAR" ]; then
  echo "$IMAGE" > "$CACHE/image/latest"; echo "image up to date: $IMAGE" >&2; echo "$IMAGE"; exit 0
fi
T0=$(date +%s)
BASE=$(bash "$HERE/base.sh")
CTX=$(mktemp -d); trap 'rm -rf "$CTX"' EXIT
bash "$HERE/wheels.sh" "$CTX/wheels"
T1=$(date +%s)
podman build -q --network none --build-arg BASE="$BASE" --label "dev.agentruntime.inputs=$KEY" \
  -f "$HERE/Containerfile" -t "$IMAGE" "$CTX" >/dev/null
rm -f "$TAR.tmp"; podman save -q -o "$TAR.tmp" "$IMAGE" && mv "$TAR.tmp" "$TAR"
# keep the last 3 archives
ls -t "$CACHE"/image/agent-runtime-*.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
echo "$IMAGE" > "$CACHE/image/latest"
echo "image $IMAGE built in $(( $(date +%s) - T0 ))s (podman build $(( $(date +%s) - T1 ))s), $(du -h "$TAR" | cut -f1) saved" >&2
echo "$IMAGE"
