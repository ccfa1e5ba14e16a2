"""e2e fixtures: a real kube-apiserver + etcd on loopback (tests/e2e/harness.py), shared by the session.

The binaries come from scripts/k8s/build.sh (built once from the Go module proxy, then cached under
~/.cache/agent-runtime/k8s/). Every test in tests/e2e is marked `e2e`. Tests should use their own
namespace (`namespace` fixture) so they do not see each other's objects; without
kube-controller-manager a namespace is never deleted, so none are.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Cluster, build_binaries  # tests/e2e is on sys.path (rootdir conftest import)

_ns_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs against a real kube-apiserver + etcd (tests/e2e)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd + kube-apiserver on free loopback ports with crds/*.yaml applied and established."""
    cluster = Cluster.start(build_binaries(), tmp_path_factory.mktemp("k8s"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def namespace(apiserver: Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh namespace for one test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{next(_ns_counter)}"
    apiserver.kubectl("create", "namespace", name)
    return name
