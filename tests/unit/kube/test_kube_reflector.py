"""What a Reflector hands its handler when a re-list finds changes, keeping whole objects or only
their identity (the operator's watch of every Agent keeps no second copy)."""

from __future__ import annotations

from typing import Any

import pytest

from agent_runtime.kube.client import Reflector


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
