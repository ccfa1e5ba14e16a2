"""Tokens across shards: every shard of a pool mounts the same data volume, so they share
`<data>/tokens.json` (token digests) and accept one admin token read from a file (the pool's
Secret, mounted on every shard and given to the operator).

A token created through one shard (`POST /v1/tokens`) is written to the shared file; the other
shards re-read the file when its mtime changes: `watch()` (run by the shard next to its server)
checks it every RECHECK_S in a worker thread, so a token works on whichever shard the agent lives
on, and `authenticate` stays a dictionary lookup. No file IO runs on the event loop: `acreate`
writes (merge under an flock, then rename) in a worker thread too. The router does not
authenticate: it passes the `Authorization` header through to the owning shard, which decides.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path

from agent_runtime.auth import Grant, Role, TokenStore, read_grants, write_grants

log = logging.getLogger(__name__)

RECHECK_S = 1.0


class SharedTokenStore(TokenStore):
    def __init__(self, path: Path, admin_token: str | None, enabled: bool = True) -> None:
        super().__init__(path, enabled=enabled)
        self.shared_path = path
        self._admin_digest = hashlib.sha256(admin_token.encode()).hexdigest() if admin_token else None
        self._mtime = self._stat()
        self._add_admin()

    def _add_admin(self) -> None:
        if self._admin_digest is not None:
            self._grants[self._admin_digest] = Grant(Role.ADMIN)

    def _stat(self) -> float:
        try:
            return self.shared_path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _merge_and_write(self, grants: dict[str, Grant]) -> tuple[dict[str, Grant], float]:
        """(Blocking.) Every shard of the pool writes this file: under an exclusive flock, take in
        what the others wrote since we last read it, so one shard's write never drops another's
        token (tokens are only ever added), and no two shards write the temporary file at once.
        The admin token stays out of the file (it lives in the Secret). Returns the merged grants
        and the file's new mtime."""
        path = self.shared_path
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            for digest, grant in read_grants(path).items():
                grants.setdefault(digest, grant)
            if self._admin_digest is not None:
                grants.pop(self._admin_digest, None)
            write_grants(path, grants)
            return grants, self._stat()
        finally:
            os.close(lock_fd)

    def _save(self) -> None:
        merged, self._mtime = self._merge_and_write(dict(self._grants))
        for digest, grant in merged.items():
            self._grants.setdefault(digest, grant)

    async def _persist(self) -> None:
        merged, mtime = await asyncio.to_thread(self._merge_and_write, dict(self._grants))
        for digest, grant in merged.items():
            self._grants.setdefault(digest, grant)
        self._mtime = mtime

    def _read_if_changed(self, known: float) -> tuple[float, dict[str, Grant]] | None:
        """(Blocking.) The file's (mtime, grants) when its mtime is not `known`, else None."""
        mtime = self._stat()
        if mtime == known:
            return None
        return mtime, read_grants(self.shared_path)

    async def refresh(self) -> bool:
        """Take in the shared file if another shard changed it (read in a worker thread). True when
        it was re-read."""
        if not self.enabled:
            return False
        async with self._io_lock:  # never between our own write and its mtime
            fresh = await asyncio.to_thread(self._read_if_changed, self._mtime)
            if fresh is None:
                return False
            self._mtime, grants = fresh
            self._grants = grants
            self._add_admin()
            return True

    async def watch(self) -> None:
        """Re-read the shared file whenever it changes (checked every RECHECK_S) until cancelled. A
        read that fails (the shared volume, a file that is not JSON) keeps the tokens known so far and
        is tried again at the next check: one bad read must not end the shard this runs next to."""
        failing = ""
        while True:
            await asyncio.sleep(RECHECK_S)
            try:
                await self.refresh()
            except (OSError, ValueError, KeyError, TypeError) as exc:
                if str(exc) != failing:  # one line per distinct failure, not one a second
                    log.warning("could not re-read %s (keeping the tokens known so far): %s", self.shared_path, exc)
                failing = str(exc)
            else:
                failing = ""


def read_admin_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def ensure_admin_token(path: Path) -> str:
    """The admin token in `path` (mounted from a Secret in a cluster); the first shard to start
    without one creates it (O_EXCL: concurrent shards agree on one token)."""
    import os
    import secrets

    token = read_admin_token(path)
    if token is not None:
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = "art_" + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another shard is writing it
            token = read_admin_token(path)
            if token is not None:
                return token
            time.sleep(0.02)
        raise RuntimeError(f"{path} exists but stays empty") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(candidate + "\n")
    return candidate
