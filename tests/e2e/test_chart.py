"""charts/agent-runtime renders (helm built from Go modules) into objects the real apiserver accepts
(`kubectl apply --dry-run=server`: RBAC, Deployments, Service, Ingress, the RuntimePool CR), its
values schema refuses typos, and its CRDs are the generated ones. No pod runs here (no kubelet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import ROOT, Cluster

CHART = str(ROOT / "charts" / "agent-runtime")
KUBE_VERSION = "v1.36.3"

SCENARIOS = {
    "defaults": [],
    "everything": ["--set", "examplePool.enabled=true", "--set", "router.ingress.enabled=true",
                   "--set", "router.ingress.className=nginx", "--set", "watchNamespaces={team-a,team-b}",
                   "--set", "operator.dataClaim=agents-data", "--set", "image.tag=1.2.3"],
}


def render(cluster: Cluster, namespace: str, *values: str, release: str = "rel") -> list[dict[str, Any]]:
    out = cluster.helm("template", release, CHART, "--namespace", namespace, "--kube-version", KUBE_VERSION,
                       *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_lints(apiserver: Cluster) -> None:
    proc = apiserver.helm("lint", CHART, "--kube-version", KUBE_VERSION)
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_chart_is_accepted_by_the_apiserver(apiserver: Cluster, namespace: str, scenario: str) -> None:
    docs = render(apiserver, namespace, *SCENARIOS[scenario])
    kinds = sorted({d["kind"] for d in docs})
    assert {"Role", "RoleBinding", "Deployment", "Service", "ServiceAccount"} <= set(kinds)
    text = yaml.safe_dump_all(docs)
    for ns in {d["metadata"].get("namespace") for d in docs} - {namespace, None}:  # watchNamespaces' Roles
        apiserver.kubectl("create", "namespace", ns, check=False)
    proc = apiserver.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
    assert proc.returncode == 0, proc.stderr
    if scenario == "everything":
        by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        pool = by_kind[("RuntimePool", "local")]
        assert pool["spec"]["image"] == "ghcr.io/agent-runtime/agent-runtime:1.2.3"
        op = by_kind[("Deployment", "rel-agent-runtime-operator")]["spec"]["template"]["spec"]["containers"][0]
        assert op["args"][-4:] == ["--namespace", "team-a", "--namespace", "team-b"]
        assert "--data" in op["args"]
        # liveness counts only after start-up (listing every Agent), up to operator.startupSeconds (300)
        assert op["startupProbe"]["periodSeconds"] * op["startupProbe"]["failureThreshold"] >= 300
        ingress = by_kind[("Ingress", "rel-agent-runtime-router")]
        assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/v1/agents"


def test_values_schema_refuses_unknown_keys(apiserver: Cluster) -> None:
    proc = apiserver.helm("template", "rel", CHART, "--kube-version", KUBE_VERSION, "--set", "operator.replica=2",
                          check=False)
    assert proc.returncode != 0 and "replica" in proc.stderr


def test_chart_crds_are_the_generated_crds(apiserver: Cluster) -> None:
    chart_crds = sorted(p.name for p in (Path(CHART) / "crds").glob("*.yaml"))
    assert chart_crds == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    for name in chart_crds:
        assert (Path(CHART) / "crds" / name).read_text() == (ROOT / "crds" / name).read_text()
