#!/usr/bin/env bash
# scripts/image/base.sh : the base image of the offline image path, made from Debian packages only.
# `debootstrap --variant=minbase bookworm` + python3 (3.11, Debian's) + pip + git + ca-certificates,
# a non-root user (uid 10001), no apt lists/docs/caches; tarred and imported into podman.
# Cached: ~/.cache/agent-runtime/image/base-<hash>.tar, keyed by this file's content. Prints the
# image name (localhost/agent-runtime-base:<hash>) on its last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${AGENT_RUNTIME_CACHE:-$HOME/.cache/agent-runtime}/image
SUITE=bookworm
PACKAGES=python3,python3-pip,git,ca-certificates
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE"
KEY=$(sha256sum "$HERE/base.sh" | cut -c1-16)
NAME=localhost/agent-runtime-base:$KEY
TAR=$CACHE/base-$KEY.tar
exec 9>"$CACHE/.base.lock"; flock 9
if podman image exists "$NAME"; then echo "$NAME"; exit 0; fi
if [ ! -f "$TAR" ]; then
  command -v debootstrap >/dev/null || { echo "base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  T0=$(date +%s)
  ROOT=$(mktemp -d "$CACHE/rootfs.XXXXXX"); trap 'rm -rf "$ROOT"' EXIT
  nice -n 19 debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" \
    > "$CACHE/base-$KEY.log" 2>&1 || { tail -20 "$CACHE/base-$KEY.log" >&2; exit 1; }
  # pip installs into the system python inside the image (the image is the environment)
  rm -f "$ROOT"/usr/lib/python3*/EXTERNALLY-MANAGED
  chroot "$ROOT" useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin agent
  chroot "$ROOT" apt-get clean
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
         "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
         "$ROOT"/usr/share/locale/* "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/tmp/*
  find "$ROOT" -name __pycache__ -type d -prune -exec rm -rf {} +
  # a container's resolv.conf and hosts come from its runtime; leave no trace of this machine's
  : > "$ROOT/etc/resolv.conf"; : > "$ROOT/etc/hostname"
  tar --numeric-owner --xattrs -C "$ROOT" -cf "$TAR.tmp" . && mv "$TAR.tmp" "$TAR"
  echo "base image rootfs built in $(( $(date +%s) - T0 ))s: $TAR" >&2
fi
podman import --change 'USER 10001' --change 'WORKDIR /home/agent' --change 'ENV PYTHONUNBUFFERED=1' \
  "$TAR" "$NAME" >/dev/null
echo "$NAME"
