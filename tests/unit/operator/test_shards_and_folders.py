"""Lease parsing/eligibility and the finalizer's folder handling (real files, real flock)."""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent_runtime import layout
from agent_runtime.kube import folders
from agent_operator.shards import observe_lease, ordinal


def lease(renew: str | None, duration: int = 15, draining: bool = False) -> dict[str, object]:
    ann = {"agentruntime.dev/address": "http://10.0.0.5:8470"}
    if draining:
        ann["agentruntime.dev/draining"] = "true"
    return {"metadata": {"name": "p-0", "namespace": "ns", "labels": {"agentruntime.dev/pool": "p"},
                         "annotations": ann},
            "spec": {"holderIdentity": "p-0", "leaseDurationSeconds": duration, "renewTime": renew}}


def test_lease_freshness_and_draining() -> None:
    shard = observe_lease(lease("2026-11-25T10:00:00.000000Z", 15), now=100.0)
    assert shard is not None and shard.pool == "p" and shard.address == "http://10.0.0.5:8470"
    assert shard.eligible(114.9) and not shard.fresh(115.0)
    drained = observe_lease(lease("2026-11-25T10:00:00.000000Z", 15, draining=True), now=100.0)
    assert drained is not None and drained.fresh(101.0) and not drained.eligible(101.0)
    never = observe_lease(lease(None), now=100.0)
    assert never is not None and not never.fresh(100.0)
    assert observe_lease({"metadata": {"name": "kube-scheduler", "namespace": "kube-system"}}, now=0.0) is None


@pytest.mark.parametrize("renew", ["1999-01-01T00:00:00.000000Z", "2026-11-25T10:00:00.000000Z",
                                   "2099-12-31T23:59:59.000000Z"])
def test_lease_expiry_uses_the_operators_clock_not_the_renew_time(renew: str) -> None:
    """A renewTime hours in the past or years in the future (a skewed shard or operator clock) makes
    no difference: the Lease lives one duration from when the operator saw renewTime change."""
    seen = observe_lease(lease(renew, 15), now=1000.0)
    assert seen is not None and seen.fresh(1014.9) and not seen.fresh(1015.0)


def test_a_renewal_is_a_changed_renew_time_and_nothing_else() -> None:
    first = observe_lease(lease("2026-11-25T10:00:00.000000Z"), now=1000.0)
    # the same renewTime seen again (an annotation edit, a re-list) does not refresh the Lease
    same = observe_lease(lease("2026-11-25T10:00:00.000000Z", draining=True), now=1010.0, previous=first)
    assert same is not None and same.draining and same.expires_at == 1015.0
    assert not same.fresh(1015.0)
    # a later renewTime (whatever its value against our clock) is a renewal, seen at our `now`
    renewed = observe_lease(lease("2026-11-25T10:00:05.000000Z"), now=1012.0, previous=same)
    assert renewed is not None and renewed.expires_at == 1027.0
    # no renewal for a whole duration of OUR clock: expired, even though renewTime never "aged"
    assert renewed.fresh(1026.9) and not renewed.fresh(1027.0)


def test_a_renew_time_moved_back_ends_the_lease_at_once() -> None:
    """`Lease.give_up` (a shard's graceful stop) moves renewTime a whole duration back: expired now,
    without comparing it to the operator's clock; the restarted shard's next renewal is fresh."""
    alive = observe_lease(lease("2026-11-25T10:00:05.000000Z"), now=1000.0)
    ended = observe_lease(lease("2026-11-25T09:59:49.000000Z"), now=1001.0, previous=alive)
    assert ended is not None and not ended.fresh(1001.0) and ended.expires_at is None
    back = observe_lease(lease("2026-11-25T10:00:20.000000Z"), now=1005.0, previous=ended)
    assert back is not None and back.fresh(1005.0) and back.expires_at == 1020.0


def test_ordinal() -> None:
    assert ordinal("pool-12", "pool") == 12
    assert ordinal("pool-x", "pool") is None and ordinal("other-1", "pool") is None


def make_agent(data: Path) -> Path:
    folder = layout.agent_folder(data, "ns", "a")
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
