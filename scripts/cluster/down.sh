#!/usr/bin/env bash
# scripts/cluster/down.sh : `make cluster-down`. Stops every process up.sh started (by the PIDs it
# recorded; the pods' containers through containerd first), unmounts what they mounted, deletes the
# links, and restores sysctls and iptables from $STATE/before. The logs are kept in
# ~/.cache/agent-runtime/cluster/last-logs/. Prints what it restored; exits 1 if anything is left.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"
[ "$(id -u)" = 0 ] || { echo "make cluster-down: needs root" >&2; exit 1; }
[ -d "$STATE" ] || { echo "no cluster state in $STATE: nothing to do" >&2; exit 0; }
T0=$(date +%s)
say() { echo "cluster-down: $*" >&2; }
left=0
if [ ! -f "$BEFORE/complete" ]; then  # up.sh stopped before recording: nothing to restore from
  say "no before-state in $BEFORE: stopping and unmounting only"; mkdir -p "$BEFORE"
  for f in mounts.txt netns.txt links.txt paths.txt; do touch "$BEFORE/$f"; done
  iptables-save > "$BEFORE/iptables.v4"; ip6tables-save > "$BEFORE/iptables.v6"; sysctl -a 2>/dev/null | LC_ALL=C sort > "$BEFORE/sysctl.txt"
fi

stop() {  # name [timeout_s]: SIGTERM, then SIGKILL, by the recorded PID
  local f=$PIDS/$1.pid pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for i in $(seq 1 $(( ${2:-10} * 10 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; sleep 0.2; }
  fi
  rm -f "$f"
}

# 1. node agents first (no restarts of what we kill next), then the pods through containerd
stop kubelet 15; stop kube-proxy; stop coredns; stop kube-scheduler; stop kube-controller-manager
if [ -S "$CTR_SOCK" ]; then
  C="ctr --address $CTR_SOCK -n k8s.io"
  for t in $($C tasks ls -q 2>/dev/null); do $C tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $($C tasks ls -q 2>/dev/null); do $C tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $($C containers ls -q 2>/dev/null); do $C containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd 15
# shims whose containerd was ours (their command line names our socket), by PID
for d in /proc/[0-9]*; do
  if tr '\0' ' ' 2>/dev/null < "$d/cmdline" | grep -q -- "-address $CTR_SOCK"; then
    kill -KILL "${d#/proc/}" 2>/dev/null && say "killed shim ${d#/proc/}"
  fi
done
stop kube-apiserver 15; stop etcd

# 2. mounts: everything under our folders and the pods' network namespaces, deepest first
mounts() { awk '{print $5}' /proc/self/mountinfo | LC_ALL=C sort -u; }
for i in 1 2 3; do
  mounts | grep -E "^($STATE|$RUNDIR)(/|$)|^/run/netns/cni-" | grep -vxF -f "$BEFORE/mounts.txt" \
    | awk '{print length, $0}' | sort -rn | cut -d' ' -f2- | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
done
for ns in $(ls -1 /run/netns 2>/dev/null); do
  grep -qxF "$ns" "$BEFORE/netns.txt" 2>/dev/null || rm -f "/run/netns/$ns"
done

# 3. links this cluster made (the bridges; any veth left over) and the route
for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
  grep -qxF "$l" "$BEFORE/links.txt" && continue
  case $l in "$NODE_BR"|"$POD_BR"|veth*) ip link delete "$l" 2>/dev/null && say "deleted link $l";; *) say "left link $l (not ours?)";; esac
done

# 4. iptables (kube-proxy's and kubelet's chains, our egress rules): back to the recorded tables
restore_tables() {  # save-cmd restore-cmd before-file
  local t
  for t in $($1 | sed -n 's/^\*//p'); do
    grep -qx "\*$t" "$3" || { ${1%-save} -t "$t" -F; ${1%-save} -t "$t" -X; }
  done
  $2 < "$3"
}
restore_tables iptables-save iptables-restore "$BEFORE/iptables.v4"
restore_tables ip6tables-save ip6tables-restore "$BEFORE/iptables.v6"
# iptables-nft leaves an emptied table behind: drop the tables that did not exist before (nft)
if command -v nft >/dev/null; then
  for fam in ip ip6; do
    f=$BEFORE/iptables.v4; [ $fam = ip6 ] && f=$BEFORE/iptables.v6
    for t in filter nat mangle raw security; do
      grep -qx "\*$t" "$f" || nft delete table "$fam" "$t" 2>/dev/null || true
    done
  done
fi

# 5. sysctls changed by kubelet, kube-proxy, the bridge plugin and up.sh: restore recorded values
#    (counters and per-device keys of devices that are gone are skipped)
sysctl -a 2>/dev/null | LC_ALL=C sort > "$STATE/sysctl.after"
LC_ALL=C comm -13 "$BEFORE/sysctl.txt" "$STATE/sysctl.after" | while IFS= read -r line; do
  key=${line%% = *}
  case $key in kernel.random.*|fs.dentry-state|fs.file-nr|fs.inode-*|kernel.ns_last_pid|kernel.pty.nr|\
    net.netfilter.nf_conntrack_count|fs.aio-nr|fs.quota.*|kernel.sched_*|kernel.tainted|fs.binfmt_misc.*) continue;; esac
  old=$(grep -m1 "^$key = " "$BEFORE/sysctl.txt" | sed 's/^[^=]* = //') || continue
  [ -n "$old" ] || continue
  sysctl -qw "$key=$old" 2>/dev/null && say "sysctl $key restored to $old"
done

# 6. cgroups made by kubelet/containerd (empty once the pods are gone), deepest first
find /sys/fs/cgroup -mindepth 2 -type d \( -path '*/kubepods*' -o -path '*/k8s.io*' \) 2>/dev/null \
  | awk '{print length, $0}' | sort -rn | cut -d' ' -f2- | while read -r d; do rmdir "$d" 2>/dev/null; done

# 7. folders: keep the logs, drop the state; paths kubelet/CNI make at fixed places if new
mkdir -p "$CACHE/cluster"; rm -rf "$CACHE/cluster/last-logs"; cp -r "$LOGS" "$CACHE/cluster/last-logs" 2>/dev/null
for p in /var/log/pods /var/log/containers /run/netns /etc/cni /var/lib/cni /run/containerd /var/lib/kubelet; do
  [ -e "$p" ] && ! grep -qxF "$p" "$BEFORE/paths.txt" && { rm -rf "$p"; say "removed $p"; }
done

# 8. check: nothing of ours runs, is mounted, or is linked; sysctls and iptables as before
for d in /proc/[0-9]*; do
  if tr '\0' ' ' 2>/dev/null < "$d/cmdline" | grep -q -E -- "$STATE|$RUNDIR"; then
    say "STILL RUNNING: ${d#/proc/} $(tr '\0' ' ' < "$d/cmdline" | cut -c1-120)"; left=1
  fi
done
if mounts | grep -E "^($STATE|$RUNDIR)(/|$)|^/run/netns/cni-" | grep -vxF -f "$BEFORE/mounts.txt"; then say "STILL MOUNTED (above)"; left=1; fi
for l in "$NODE_BR" "$POD_BR"; do ip link show "$l" >/dev/null 2>&1 && { say "STILL LINKED: $l"; left=1; }; done
# iptables compared by their rules and policies (an emptied table that did not exist before, with
# ACCEPT policies and no rule, is the same as none: iptables-nft cannot drop the table itself)
norm() { awk '/^\*/{t=$0; n=0; buf=""; next} /^:/{split($0,a," "); if (a[2]!="ACCEPT" && a[2]!="-") n++; buf=buf t" "a[1]" "a[2]"\n"; next}
              /^-A/{n++; buf=buf t" "$0"\n"; next} /^COMMIT/{if (n) printf "%s", buf}'; }
for v in 4 6; do
  cmd=iptables-save; [ $v = 6 ] && cmd=ip6tables-save
  if ! diff <($cmd | norm) <(norm < "$BEFORE/iptables.v$v") >&2; then say "ip${v/4/}tables differ from before (above)"; left=1; fi
done
sysctl -a 2>/dev/null | LC_ALL=C sort > "$STATE/sysctl.after"
changed=$(LC_ALL=C comm -13 "$BEFORE/sysctl.txt" "$STATE/sysctl.after" | grep -v -E \
  '^(kernel\.random\.|fs\.dentry-state|fs\.file-nr|fs\.inode-|kernel\.ns_last_pid|kernel\.pty\.nr|net\.netfilter\.nf_conntrack_count|fs\.aio-nr|fs\.quota\.|kernel\.sched_|kernel\.tainted|fs\.binfmt_misc\.)' \
  | grep -v -E '^net\.ipv[46]\.(conf|neigh)\.(arnode0|arcni0|veth)' || true)
[ -n "$changed" ] && { say "sysctls still differ:"; echo "$changed" >&2; }
if [ "$left" = 0 ]; then
  rm -rf "$STATE" "$RUNDIR"
  say "done in $(( $(date +%s) - T0 ))s: no process, mount, link or iptables rule of the cluster left"
else
  say "done in $(( $(date +%s) - T0 ))s with leftovers (state kept in $STATE; run again)"; exit 1
fi
