"""Bearer tokens: who may watch, talk to, or administer which agents.

A token is scoped to one agent (`namespace/name`), to one namespace, or to everything, and grants
a role: `viewer` (watch), `operator` (also send, interrupt, approve) or `admin` (also create,
reconfigure and delete agents, and create tokens no wider than its own) — each within its scope,
so an admin token scoped to a namespace administers that namespace only. Only SHA-256 digests are stored
(`<data_dir>/tokens.json`); the plaintext is shown once, at creation. The standalone server
creates an admin token on first start in `<data_dir>/admin.token` (mode 0600).

A token may carry a `name` (a label for people: `agentctl token --name ci-bot`): 1–64 characters
of `A-Z a-z 0-9 . _ -`, starting with a letter or a digit; anything else is refused with
`invalid_token_name` (HTTP 422) before a token is made.

Refusals have distinct codes: `unauthenticated` (no or unknown token, HTTP 401), `forbidden`
(a valid token for another agent or namespace, HTTP 403), `permission_denied` (the role may not do
this: a viewer that sends).

`create` writes the digest file synchronously (the CLI, startup); the server calls `acreate`, which
adds the grant in memory and writes the file in a worker thread (writes serialized, never on the
event loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from agent_runtime import atomicfile, errors


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class AuthError(errors.Error, code="unauthenticated"):
    """A refused request: `code` is `unauthenticated`, `forbidden` or `permission_denied`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)

    @property
    def status(self) -> int:
        """The HTTP status (`http_status`)."""
        return self.http_status


TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOKEN_NAME_RULE = "1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or a digit"


class InvalidTokenName(errors.Error, code="invalid_token_name"):
    """A token name that breaks `TOKEN_NAME_RULE` (HTTP 422; `field` is `name`)."""

    def extra(self) -> dict[str, Any]:
        return {"field": "name"}


def check_token_name(name: object) -> str:
    """`name` if it is a valid token name, else `InvalidTokenName` saying the rule."""
    if not isinstance(name, str) or TOKEN_NAME.fullmatch(name) is None:
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        raise InvalidTokenName(f"token name {shown} is invalid: {TOKEN_NAME_RULE}")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """What a token allows: `role` on `namespace` (None: all) / `agent` (None: all in namespace).
    `name` labels the token for people (`check_token_name`); it grants nothing."""

    role: Role
    namespace: str | None = None
    agent: str | None = None
    name: str | None = None

    def covers(self, namespace: str, name: str | None = None) -> bool:
        if self.namespace is not None and self.namespace != namespace:
            return False
        return self.agent is None or name is None or self.agent == name

    def contains(self, other: Grant) -> bool:
        """Whether everything `other` allows, this grant allows too (for creating tokens)."""
        if not self.at_least(other.role):
            return False
        if self.namespace is not None and other.namespace != self.namespace:
            return False
        return self.agent is None or other.agent == self.agent

    def at_least(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]

    def to_dict(self) -> dict[str, str | None]:
        out = {"role": self.role.value, "namespace": self.namespace, "agent": self.agent}
        return out if self.name is None else {**out, "name": self.name}


OPEN_GRANT = Grant(Role.ADMIN)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write_grants(path: Path, grants: dict[str, Grant]) -> None:
    """Write the digest file atomically (0600, never readable in between; a failed write leaves
    the old file and no temporary file)."""
    atomicfile.write_text_atomic(path, json.dumps({d: g.to_dict() for d, g in grants.items()}, indent=1))


def read_grants(path: Path) -> dict[str, Grant]:
    """The grants of a digest file (empty when it does not exist)."""
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {digest: Grant(Role(g["role"]), g.get("namespace"), g.get("agent"), g.get("name")) for digest, g in raw.items()}


class TokenStore:
    """Token digests → grants, persisted as JSON. `enabled=False` lets everyone in as admin."""

    def __init__(self, path: Path | None, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self._grants: dict[str, Grant] = {}
        self._io_lock = asyncio.Lock()  # one file write (or re-read) at a time from the event loop
        if path is not None:
            self._grants.update(read_grants(path))

    def _save(self) -> None:
        if self.path is not None:
            write_grants(self.path, self._grants)

    def _add(self, grant: Grant) -> str:
        if grant.agent is not None and grant.namespace is None:
            raise ValueError("an agent-scoped token needs its namespace")
        if grant.name is not None:
            check_token_name(grant.name)
        token = "art_" + secrets.token_urlsafe(32)
        self._grants[_digest(token)] = grant
        return token

    def create(self, grant: Grant) -> str:
        """A new token for `grant`; the plaintext is returned once and never stored."""
        token = self._add(grant)
        self._save()
        return token

    async def acreate(self, grant: Grant) -> str:
        """`create` for the event loop: the grant is added in memory at once, the file is written in a
        worker thread (one write at a time, each with everything added so far)."""
        token = self._add(grant)
        async with self._io_lock:
            await self._persist()
        return token

    async def _persist(self) -> None:
        if self.path is not None:
            await asyncio.to_thread(write_grants, self.path, dict(self._grants))

    def ensure_admin_token(self, token_file: Path) -> str:
        """The admin token in `token_file`, created (0600) if missing or unknown."""
        if token_file.exists():
            token = token_file.read_text(encoding="utf-8").strip()
            if _digest(token) in self._grants:
                return token
        token = self.create(Grant(Role.ADMIN))
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        return token

    def authenticate(self, authorization: str | None) -> Grant:
        """The grant of an `Authorization: Bearer …` header, or `AuthError(unauthenticated)`."""
        if not self.enabled:
            return OPEN_GRANT
        if not authorization:
            raise AuthError("unauthenticated", "missing 'Authorization: Bearer <token>' header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("unauthenticated", "the Authorization header must be 'Bearer <token>'")
        grant = self._grants.get(_digest(token.strip()))
        if grant is None:
            raise AuthError("unauthenticated", "unknown token")
        return grant

    @staticmethod
    def authorize(grant: Grant, namespace: str, name: str | None, role: Role) -> None:
        """Raise `forbidden` if the grant does not cover the target, `permission_denied` if its role is too low."""
        if not grant.covers(namespace, name):
            target = f"{namespace}/{name}" if name else f"namespace {namespace}"
            raise AuthError("forbidden", f"this token does not grant access to {target}")
        if not grant.at_least(role):
            raise AuthError("permission_denied", f"role {grant.role.value!r} may not do this (needs {role.value!r})")
