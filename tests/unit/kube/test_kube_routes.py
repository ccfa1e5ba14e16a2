"""The router's table: typed refusals, moves detected, expired shards refused."""

from __future__ import annotations

import pytest

from agent_runtime.kube.router import CLOSE_MOVED, client_close_code
from agent_runtime.kube.routes import RouteError, RouteTable, ShardInfo, agent_shard, parse_time, shard_from_lease


def lease(name: str, address: str | None, renew: str, duration: int = 15, draining: bool = False) -> dict:
    ann = {}
    if address:
        ann["agentruntime.dev/address"] = address
    if draining:
        ann["agentruntime.dev/draining"] = "true"
    return {"metadata": {"name": name, "namespace": "ns", "annotations": ann},
            "spec": {"holderIdentity": name, "renewTime": renew, "leaseDurationSeconds": duration}}


def test_resolve_and_typed_errors() -> None:
    t = RouteTable()
    now = parse_time("2026-01-01T00:00:10.000000Z")
    t.set_shard("ns", shard_from_lease(lease("pool-0", "http://10.0.0.1:8470/", "2026-01-01T00:00:00.000000Z")))
    t.set_agent("ns/a", "pool-0")
    route = t.resolve("ns", "a", now)
    assert (route.shard, route.address) == ("pool-0", "http://10.0.0.1:8470")

    with pytest.raises(RouteError) as e:
        t.resolve("ns", "nope", now)
    assert (e.value.code, e.value.status) == ("agent_not_found", 404)

    t.set_agent("ns/b", None)
    with pytest.raises(RouteError) as e:
        t.resolve("ns", "b", now)
    assert (e.value.code, e.value.status) == ("agent_not_placed", 503)

    t.set_agent("ns/c", "pool-9")
    with pytest.raises(RouteError) as e:
        t.resolve("ns", "c", now)
    assert (e.value.code, e.value.status) == ("shard_unavailable", 503)

    with pytest.raises(RouteError) as e:  # lease expired (renewed 20 s ago, duration 15)
        t.resolve("ns", "a", now + 10)
    assert e.value.code == "shard_unavailable" and "not renewing" in str(e.value)


def test_agent_in_another_namespace_does_not_use_this_namespace_shard() -> None:
    t = RouteTable()
    t.set_shard("ns", ShardInfo("pool-0", "http://x", renewed=100.0, duration_s=15))
    t.set_agent("other/a", "pool-0")
    with pytest.raises(RouteError):
        t.resolve("other", "a", 101.0)


def test_moves_are_reported_once() -> None:
    t = RouteTable()
    assert t.set_agent("ns/a", None) is False  # first seen, not placed
    assert t.set_agent("ns/a", "s0") is False  # placed: nobody was connected through another shard
    assert t.set_agent("ns/a", "s0") is False  # status update, same shard
    assert t.set_agent("ns/a", "s1") is True  # moved
    assert t.set_agent("ns/a", None) is True  # lost its shard
    assert t.remove_agent("ns/a") is True
    assert t.remove_agent("ns/a") is False


def test_lease_parsing() -> None:
    info = shard_from_lease(lease("p-1", "http://a", "2026-01-01T00:00:00.5Z", duration=6, draining=True))
    assert info.draining and info.duration_s == 6 and info.address == "http://a"
    assert info.alive(info.renewed + 5.9) and not info.alive(info.renewed + 6.1)
    assert shard_from_lease({"metadata": {"name": "x"}}).address is None
    assert agent_shard({"status": {"shard": "p-1"}}) == "p-1"
    assert agent_shard({}) is None


def test_client_close_codes() -> None:
    assert client_close_code(None, "") == CLOSE_MOVED  # shard vanished
    assert client_close_code(1006, "") == CLOSE_MOVED
    assert client_close_code(1001, "server shutting down") == CLOSE_MOVED
    assert client_close_code(1001, "agent deleted") == 1001
    assert client_close_code(1013, "send queue full") == 1013
    assert client_close_code(1012, "agent moved") == 1012
    assert client_close_code(1000, "") == 1000
