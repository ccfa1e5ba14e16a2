#!/usr/bin/env bash
# scripts/image/smoke.sh [IMAGE] [RUNS] : the image runs as non-root with a read-only root filesystem
# and no network, imports its native core, and answers /healthz; prints the start-up time of each run
# (scripts/image/startup.py). IMAGE defaults to the last `make image`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=${1:-$(cat "${AGENT_RUNTIME_CACHE:-$HOME/.cache/agent-runtime}/image/latest")}
# explicit limits: root here lacks CAP_SYS_RESOURCE, and podman's defaults would raise them
RUN=(podman run --rm --read-only --network none --tmpfs /tmp --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
"${RUN[@]}" "$IMAGE" sh -c 'test "$(id -u)" = 10001 && ! touch /probe 2>/dev/null && python3 -c "import agent_runtime._native, agent_operator"' \
  || { echo "smoke: $IMAGE is not non-root + read-only, or cannot import its packages" >&2; exit 1; }
for _ in $(seq 1 "${2:-5}"); do
  "${RUN[@]}" -v "$HERE/startup.py:/startup.py:ro" "$IMAGE" python3 /startup.py
done
echo "image $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
