"""Tokens across the shards of a pool: one admin token from the Secret file, other tokens shared
through <data>/tokens.json on the pool's volume."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.auth import AuthError, Grant, Role
from agent_runtime.kube import tokens as kt


async def test_a_token_made_on_one_shard_works_on_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kt, "RECHECK_S", 0.01)
    admin = kt.ensure_admin_token(tmp_path / "admin.token")
    shard_a = kt.SharedTokenStore(tmp_path / "tokens.json", admin)
    shard_b = kt.SharedTokenStore(tmp_path / "tokens.json", admin)
    assert shard_b.authenticate(f"Bearer {admin}").role is Role.ADMIN
    watch = asyncio.create_task(shard_b.watch())  # what a shard runs next to its server
    try:
        viewer = await shard_a.acreate(Grant(Role.VIEWER, "ns", "a"))
        os.utime(tmp_path / "tokens.json", (1, 1))  # make the change visible even within one mtime tick
        for _ in range(500):
            try:
                shard_b.authenticate(f"Bearer {viewer}")
                break
            except AuthError:
                pass
            await asyncio.sleep(0.01)
    finally:
        watch.cancel()
    grant = shard_b.authenticate(f"Bearer {viewer}")
    assert (grant.role, grant.namespace, grant.agent) == (Role.VIEWER, "ns", "a")
    assert shard_b.authenticate(f"Bearer {admin}").role is Role.ADMIN  # the admin survives the reload
    with pytest.raises(AuthError) as exc:
        shard_b.authenticate("Bearer art_nope")
    assert exc.value.code == "unauthenticated"
    # the admin token lives in the Secret file only, never in the shared digest file
    stored = json.loads((tmp_path / "tokens.json").read_text())
    assert [g["role"] for g in stored.values()] == ["viewer"]


def test_concurrent_first_starts_agree_on_one_admin_token(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(kt.ensure_admin_token(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and path.read_text().strip() == got[0]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_tokens_made_on_two_shards_at_once_are_both_kept(tmp_path: Path) -> None:
    """Each shard writes tokens.json from its own copy; the second write must not drop a token the
    first made (neither shard has re-read the file yet: within RECHECK_S)."""
    admin = kt.ensure_admin_token(tmp_path / "admin.token")
    shard_a = kt.SharedTokenStore(tmp_path / "tokens.json", admin)
    shard_b = kt.SharedTokenStore(tmp_path / "tokens.json", admin)
    made_on_a = shard_a.create(Grant(Role.VIEWER, "ns", "a"))
    made_on_b = shard_b.create(Grant(Role.VIEWER, "ns", "b"))
    fresh = kt.SharedTokenStore(tmp_path / "tokens.json", admin)
    assert fresh.authenticate(f"Bearer {made_on_a}").agent == "a"
    assert fresh.authenticate(f"Bearer {made_on_b}").agent == "b"
    assert fresh.authenticate(f"Bearer {admin}").role is Role.ADMIN
    assert len(json.loads((tmp_path / "tokens.json").read_text())) == 2  # the admin stays out of the file


async def test_no_token_file_io_on_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """authenticate is a lookup (it used to stat, and re-read, tokens.json on the loop); a re-read and
    a create's write happen in worker threads."""
    admin = kt.ensure_admin_token(tmp_path / "admin.token")
    store = kt.SharedTokenStore(tmp_path / "tokens.json", admin)
    other = kt.SharedTokenStore(tmp_path / "tokens.json", admin)
    loop_thread = threading.get_ident()
    on_loop: list[str] = []
    real_stat, real_read, real_write = Path.stat, kt.read_grants, kt.write_grants

    def stat(self: Path, *a: Any, **k: Any) -> os.stat_result:
        if self.name.startswith("tokens.json") and threading.get_ident() == loop_thread:
            on_loop.append(f"stat {self.name}")
        return real_stat(self, *a, **k)

    def read(path: Path) -> Any:
        if threading.get_ident() == loop_thread:
            on_loop.append("read")
        return real_read(path)

    def write(path: Path, grants: Any) -> None:
        if threading.get_ident() == loop_thread:
            on_loop.append("write")
        real_write(path, grants)

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setattr(kt, "read_grants", read)
    monkeypatch.setattr(kt, "write_grants", write)
    monkeypatch.setattr(kt, "RECHECK_S", 0.0)
    made = await other.acreate(Grant(Role.VIEWER, "ns", "x"))
    os.utime(tmp_path / "tokens.json", (1, 1))
    for _ in range(5):
        with pytest.raises(AuthError):
            store.authenticate("Bearer art_unknown")
    assert await store.refresh()  # the change is taken in off the loop
    assert store.authenticate(f"Bearer {made}").namespace == "ns"
    assert store.authenticate(f"Bearer {admin}").role is Role.ADMIN
    assert on_loop == []
