"""e2e fixtures: a real kube-apiserver + etcd on loopback (tests/e2e/harness.py), shared by consecutive e2e tests.

The binaries come from scripts/k8s/build.sh (built once from the Go module proxy, then cached under
~/.cache/agent-runtime/k8s/). Every test in tests/e2e is marked `e2e`. Tests should use their own
namespace (`namespace` fixture) so they do not see each other's objects; without
kube-controller-manager a namespace is never deleted, so none are.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from harness import Cluster, build_binaries  # tests/e2e is on sys.path (rootdir conftest import)

_ns_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs against a real kube-apiserver + etcd (tests/e2e)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _in_e2e(item):
            item.add_marker(pytest.mark.e2e)


class _Shared:
    """The cluster shared by consecutive e2e tests; stopped as soon as the run leaves tests/e2e, so
    the later suites neither pay for an idle apiserver nor count its processes as pytest's children."""

    cluster: Cluster | None = None


def _in_e2e(item: pytest.Item | None) -> bool:
    return item is not None and Path(__file__).parent in Path(str(item.fspath)).parents


def _stop_shared() -> None:
    if _Shared.cluster is not None:
        _Shared.cluster.stop()
        _Shared.cluster = None


@pytest.fixture
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """etcd + kube-apiserver on free loopback ports with crds/*.yaml applied and established (one
    cluster for all consecutive e2e tests)."""
    if _Shared.cluster is None:
        _Shared.cluster = Cluster.start(build_binaries(), tmp_path_factory.mktemp("k8s"))
    return _Shared.cluster


@pytest.hookimpl(trylast=True)  # after the test's own fixtures (operator, shards) have stopped
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if not _in_e2e(nextitem):
        _stop_shared()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_shared()


@pytest.fixture
def namespace(apiserver: Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh namespace for one test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{next(_ns_counter)}"
    apiserver.kubectl("create", "namespace", name)
    return name
