"""Tokens across shards: every shard of a pool mounts the same data volume, so they share
`<data>/tokens.json` (token digests) and accept one admin token read from a file (the pool's
Secret, mounted on every shard and given to the operator).

A token created through one shard (`POST /v1/tokens`) is written to the shared file; the other
shards re-read the file when its mtime changes (checked at most once a second), so a token works
on whichever shard the agent lives on. The router does not authenticate: it passes the
`Authorization` header through to the owning shard, which decides.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path

from agent_runtime.auth import Grant, Role, TokenStore

RECHECK_S = 1.0


class SharedTokenStore(TokenStore):
    def __init__(self, path: Path, admin_token: str | None, enabled: bool = True) -> None:
        super().__init__(path, enabled=enabled)
        self._admin_digest = hashlib.sha256(admin_token.encode()).hexdigest() if admin_token else None
        self._mtime = self._stat()
        self._checked = time.monotonic()
        self._add_admin()

    def _add_admin(self) -> None:
        if self._admin_digest is not None:
            self._grants[self._admin_digest] = Grant(Role.ADMIN)

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime if self.path is not None else 0.0
        except FileNotFoundError:
            return 0.0

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Every shard of the pool writes this file: under an exclusive flock, take in what the
        # others wrote since we last read it, so one shard's write never drops another's token
        # (tokens are only ever added), and no two shards write the temporary file at once.
        lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if self.path.exists():
                for digest, grant in TokenStore(self.path)._grants.items():
                    self._grants.setdefault(digest, grant)
            admin = self._grants.pop(self._admin_digest, None) if self._admin_digest else None
            try:
                super()._save()  # the admin token stays out of the file: it lives in the Secret
            finally:
                if admin is not None:
                    self._add_admin()
            self._mtime = self._stat()
        finally:
            os.close(lock_fd)

    def authenticate(self, authorization: str | None) -> Grant:
        now = time.monotonic()
        if self.enabled and now - self._checked >= RECHECK_S:
            self._checked = now
            mtime = self._stat()
            if mtime != self._mtime:
                fresh = TokenStore(self.path)
                self._grants = fresh._grants
                self._add_admin()
                self._mtime = mtime
        return super().authenticate(authorization)


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
