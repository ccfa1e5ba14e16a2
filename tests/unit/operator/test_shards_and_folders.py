"""Lease parsing/eligibility and the finalizer's folder handling (real files, real flock)."""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent_runtime.kube import folders
from agent_operator.shards import ordinal, shard_from_lease


def lease(renew: str | None, duration: int = 15, draining: bool = False) -> dict[str, object]:
    ann = {"agentruntime.dev/address": "http://10.0.0.5:8470"}
    if draining:
        ann["agentruntime.dev/draining"] = "true"
    return {"metadata": {"name": "p-0", "namespace": "ns", "labels": {"agentruntime.dev/pool": "p"},
                         "annotations": ann},
            "spec": {"holderIdentity": "p-0", "leaseDurationSeconds": duration, "renewTime": renew}}


def test_lease_freshness_and_draining() -> None:
    t = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone.utc).timestamp()
    shard = shard_from_lease(lease("2026-11-25T10:00:00.000000Z", 15))
    assert shard is not None and shard.pool == "p" and shard.address == "http://10.0.0.5:8470"
    assert shard.eligible(t + 14.9) and not shard.fresh(t + 15.0)
    drained = shard_from_lease(lease("2026-11-25T10:00:00.000000Z", 15, draining=True))
    assert drained is not None and drained.fresh(t + 1) and not drained.eligible(t + 1)
    never = shard_from_lease(lease(None))
    assert never is not None and not never.fresh(t)
    assert shard_from_lease({"metadata": {"name": "kube-scheduler", "namespace": "kube-system"}}) is None


def test_ordinal() -> None:
    assert ordinal("pool-12", "pool") == 12
    assert ordinal("pool-x", "pool") is None and ordinal("other-1", "pool") is None


def make_agent(data: Path) -> Path:
    folder = folders.agent_folder(data, "ns", "a")
    (folder / "workspace").mkdir(parents=True)
    (folder / "events.db").write_bytes(b"events")
    return folder


def test_archive_moves_the_folder_under_archive(tmp_path: Path) -> None:
    folder = make_agent(tmp_path)
    now = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone.utc)
    what = folders.dispose(tmp_path, "ns", "a", "archive", now=now)
    target = tmp_path / "archive" / "ns" / "a-20261125T100000Z"
    assert what.startswith("archived") and not folder.exists()
    assert (target / "events.db").read_bytes() == b"events"


def test_remove_deletes_and_missing_folder_is_fine(tmp_path: Path) -> None:
    folder = make_agent(tmp_path)
    assert folders.dispose(tmp_path, "ns", "a", "remove").startswith("removed")
    assert not folder.exists()
    assert folders.dispose(tmp_path, "ns", "a", "remove").startswith("no folder")


def test_a_held_owner_lock_blocks_disposal(tmp_path: Path) -> None:
    folder = make_agent(tmp_path)
    fd = os.open(folder / "owner.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the shard still has the agent open (another open file description)
    try:
        with pytest.raises(folders.FolderBusy):
            folders.dispose(tmp_path, "ns", "a", "remove", lock_wait_s=0.2)
        assert folder.exists()
    finally:
        os.close(fd)
    assert folders.dispose(tmp_path, "ns", "a", "remove", lock_wait_s=0.2).startswith("removed")
