"""tests/cluster fixtures: the product on a real single-node cluster (scripts/cluster/up.sh).

Opt-in for now (not part of `make test` yet): set AGENT_RUNTIME_CLUSTER_TESTS=1. Needs root and the
cached cluster binaries and image (`make cluster` builds them once; cold ~40 min on 2 busy cores).
If a cluster is already up (`make cluster`), the tests use it and leave it up; otherwise the
session starts one without the chart (AGENT_RUNTIME_CLUSTER_CHART=0) and tears it down after
(scripts/cluster/down.sh restores sysctls, iptables, links and mounts). Each test installs the chart
itself, as a user would, into a namespace of its own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_harness import ROOT, Cluster, cluster_env  # tests/cluster is on sys.path (rootdir conftest import)


def _missing(env: dict[str, str]) -> list[str]:
    k8s = Path(env["CACHE"]) / "k8s"
    node = k8s / f"node-{env['K8S_VERSION']}"
    need = [*(p for p in k8s.glob(f"{env['K8S_VERSION']}-etcd-*/kube-apiserver")),]
    out = [] if need else ["kube-apiserver/etcd/helm (scripts/k8s/build.sh)"]
    out += [f"{n} (scripts/k8s/build-node.sh)" for n in ("kubelet", "kube-proxy", "kube-scheduler",
                                                          "kube-controller-manager", "coredns", "traefik", "pause")
            if not (node / n).exists()]
    if not (Path(env["CACHE"]) / "image" / "latest").exists():
        out.append("the image (make image)")
    for tool in ("podman", "containerd", "runc", "ctr"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            out.append(f"{tool} (scripts/cluster/deps.sh)")
    return out


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"tests/cluster cannot run here: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.environ.get("AGENT_RUNTIME_CLUSTER_TESTS") != "1":
        pytest.skip("tests/cluster is opt-in for now: AGENT_RUNTIME_CLUSTER_TESTS=1 (needs root and `make cluster`'s builds)")
    if os.geteuid() != 0:
        _skip_or_fail("tests/cluster needs root (containerd, kubelet, bridges, iptables)")
    env = cluster_env()
    missing = _missing(env)
    if missing:
        _skip_or_fail("cluster binaries/image not built: " + ", ".join(missing) + " — `make cluster` builds them once")
    k8s = Path(env["CACHE"]) / "k8s"
    bins = [next(k8s.glob(f"{env['K8S_VERSION']}-etcd-*")), k8s / f"node-{env['K8S_VERSION']}"]
    pid = Path(env["PIDS"]) / "kubelet.pid"
    up = pid.exists() and Path(f"/proc/{pid.read_text().strip()}").exists()
    if not up:
        p = subprocess.run(["bash", "scripts/cluster/up.sh"], cwd=ROOT, env={**os.environ, "AGENT_RUNTIME_CLUSTER_CHART": "0"},
                           capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            subprocess.run(["bash", "scripts/cluster/down.sh"], cwd=ROOT, capture_output=True, timeout=300)
            raise AssertionError(f"scripts/cluster/up.sh failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    image = (Path(env["CACHE"]) / "image" / "latest").read_text().strip()
    c = Cluster(env, bins, image, started_here=not up)
    try:
        yield c
    finally:
        if c.started_here:
            d = subprocess.run(["bash", "scripts/cluster/down.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert d.returncode == 0, f"scripts/cluster/down.sh left something:\n{d.stderr[-3000:]}"
