#!/usr/bin/env bash
# scripts/cluster/deps.sh : the Debian packages `make image` and `make cluster` need, installed when
# missing (a fresh machine of this kind has none of them). containerd is run by up.sh with its own
# config and state; the package's service is never started (no systemd here; policy-rc.d refuses it
# elsewhere).
set -euo pipefail
PKGS="podman buildah debootstrap containerd runc containernetworking-plugins iptables nftables openssl curl"
missing=$(for p in $PKGS; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
[ -z "$missing" ] && exit 0
[ "$(id -u)" = 0 ] || { echo "deps.sh: missing Debian packages ($missing); run as root" >&2; exit 1; }
echo "deps.sh: installing $missing" >&2
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.agent-runtime
if [ ! -e /usr/sbin/policy-rc.d ]; then cp /usr/sbin/policy-rc.d.agent-runtime /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; ours=1; fi
rm -f /usr/sbin/policy-rc.d.agent-runtime
apt-get update -q >&2
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
[ "${ours:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
exit 0
