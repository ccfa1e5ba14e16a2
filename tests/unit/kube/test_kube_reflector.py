"""What a Reflector hands its handler when a re-list finds changes, keeping whole objects or only
their identity (the operator's watch of every Agent keeps no second copy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_runtime.kube.client import ApiError, Reflector


def obj(name: str, rv: str, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}", "resourceVersion": rv,
                         "labels": {"big": "x" * 100}},
            "spec": {"systemPrompt": "long " * 50}, "status": {"phase": phase}}


@pytest.mark.parametrize("keep_objects", [True, False])
def test_relist_reports_changes_and_deletions(keep_objects: bool) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    r = Reflector(None, "/apis/x", lambda kind, o: seen.append((kind, o)), keep_objects=keep_objects)  # type: ignore[arg-type]
    r._apply_list([obj("a", "1"), obj("b", "2")])  # noqa: SLF001
    assert [(k, o["metadata"]["name"]) for k, o in seen] == [("ADDED", "a"), ("ADDED", "b")]
    assert all("spec" in o for _, o in seen)  # the handler always gets whole objects from a list
    seen.clear()

    r._apply_list([obj("a", "1"), obj("b", "3", "Idle"), obj("c", "4")])  # noqa: SLF001
    assert [(k, o["metadata"]["name"], o["status"]["phase"]) for k, o in seen] == [
        ("MODIFIED", "b", "Idle"), ("ADDED", "c", "Running")]  # a, unchanged, is not reported
    seen.clear()

    r._apply_list([obj("c", "4")])  # noqa: SLF001
    assert sorted(o["metadata"]["name"] for k, o in seen if k == "DELETED") == ["a", "b"]
    deleted_b = next(o for _, o in seen if o["metadata"]["name"] == "b")
    if keep_objects:
        assert deleted_b == obj("b", "3", "Idle")  # its last known state
        assert r.store == {"ns/c": obj("c", "4")}
    else:
        assert deleted_b == {"metadata": {"namespace": "ns", "name": "b", "uid": "uid-b", "resourceVersion": "3"}}
        assert r.store == {"ns/c": {"metadata": {"namespace": "ns", "name": "c", "uid": "uid-c",
                                                 "resourceVersion": "4"}}}


class _RefusingClient:
    """A client whose first `refusals` lists are refused with `status`; then an empty collection
    whose watch ends at once (the Reflector then watches again)."""

    def __init__(self, status: int, refusals: int) -> None:
        self.status, self.refusals, self.lists = status, refusals, 0

    async def list(self, path: str, *_: Any) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        if self.lists <= self.refusals:
            raise ApiError(self.status, "Forbidden" if self.status == 403 else "", f"cannot list {path}")
        return [], "1"

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(3600)
        yield  # pragma: no cover


async def test_a_refused_first_list_is_raised_when_fatal_before_sync() -> None:
    """The operator's Agent watches: a 403 on the first list stops it with the reason (it starts
    nothing before every watch has listed); a retryable refusal (503) is still retried."""
    client = _RefusingClient(403, refusals=10)
    r = Reflector(client, "/apis/x", lambda *_: None, keep_objects=False, fatal_before_sync=True)  # type: ignore[arg-type]
    with pytest.raises(ApiError) as info:
        await asyncio.wait_for(r.run(), 10)
    assert info.value.status == 403 and client.lists == 1 and not r.synced.is_set()

    client = _RefusingClient(503, refusals=1)
    r = Reflector(client, "/apis/x", lambda *_: None, fatal_before_sync=True)  # type: ignore[arg-type]
    task = asyncio.create_task(r.run())
    await asyncio.wait_for(r.synced.wait(), 10)
    task.cancel()
    assert client.lists == 2


async def test_a_refused_first_list_is_retried_by_default() -> None:
    """The shards' and the router's watches retry everything (an RBAC fix takes effect without a restart)."""
    client = _RefusingClient(403, refusals=1)
    r = Reflector(client, "/apis/x", lambda *_: None)  # type: ignore[arg-type]
    task = asyncio.create_task(r.run())
    await asyncio.wait_for(r.synced.wait(), 10)
    task.cancel()
    assert client.lists == 2
