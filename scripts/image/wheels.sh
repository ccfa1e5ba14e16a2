#!/usr/bin/env bash
# scripts/image/wheels.sh OUT_DIR : every wheel the image installs, built on the host (so the image
# build needs no network): agent-runtime (`maturin build --release`: the Rust core + the Python
# package, abi3), agent-operator, and the pinned dependencies of scripts/image/requirements.txt.
# Caches: the cargo target dir ~/.cache/agent-runtime/cargo-target (release builds are incremental),
# the dependency wheels ~/.cache/agent-runtime/wheels/deps-<hash of requirements.txt>/, and a tools
# venv with maturin (~/.cache/agent-runtime/tools/venv).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$(realpath -m "$1"); mkdir -p "$OUT"
CACHE=${AGENT_RUNTIME_CACHE:-$HOME/.cache/agent-runtime}
TOOLS=$CACHE/tools/venv
if [ ! -f "$TOOLS/.ready-1" ]; then
  [ -x "$TOOLS/bin/pip" ] || python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q 'maturin>=1.16,<2' 'setuptools>=68' wheel >&2
  touch "$TOOLS/.ready-1"
fi
# ---- dependencies: pinned, downloaded/built once per requirements.txt
DEPS=$CACHE/wheels/deps-$(sha256sum "$HERE/requirements.txt" | cut -c1-16)
if [ ! -f "$DEPS/.done" ]; then
  mkdir -p "$DEPS"
  "$TOOLS/bin/pip" wheel -q --no-deps -w "$DEPS" -r "$HERE/requirements.txt" >&2
  touch "$DEPS/.done"
fi
cp "$DEPS"/*.whl "$OUT/"
# ---- the project: release build of the Rust core, the Python sources beside it
export CARGO_TARGET_DIR=$CACHE/cargo-target
T0=$(date +%s)
( cd "$ROOT" && nice -n 19 "$TOOLS/bin/maturin" build --release --strip --quiet --interpreter python3 --out "$OUT" ) >&2
"$TOOLS/bin/pip" wheel -q --no-deps --no-build-isolation -w "$OUT" "$ROOT/operator" >&2
rm -rf "$ROOT/operator/build" "$ROOT"/operator/*.egg-info
echo "project wheels built in $(( $(date +%s) - T0 ))s" >&2
