"""Token grants: scope and role decide; refusals carry distinct codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.auth import AuthError, Grant, Role, TokenStore


def test_tokens_are_stored_as_digests_and_survive_a_restart(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create(Grant(Role.VIEWER, "ns", "a"))
    assert token not in (tmp_path / "tokens.json").read_text()
    again = TokenStore(tmp_path / "tokens.json")
    assert again.authenticate(f"Bearer {token}") == Grant(Role.VIEWER, "ns", "a")


def test_admin_token_file_is_private_and_stable(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    first = store.ensure_admin_token(tmp_path / "admin.token")
    assert (tmp_path / "admin.token").stat().st_mode & 0o777 == 0o600
    assert TokenStore(tmp_path / "tokens.json").ensure_admin_token(tmp_path / "admin.token") == first


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer nope"])
def test_missing_or_unknown_token_is_unauthenticated(header: str | None) -> None:
    with pytest.raises(AuthError) as err:
        TokenStore(None).authenticate(header)
    assert (err.value.code, err.value.status) == ("unauthenticated", 401)


def test_scope_and_role_refusals_are_distinct() -> None:
    agent_viewer = Grant(Role.VIEWER, "ns", "a")
    TokenStore.authorize(agent_viewer, "ns", "a", Role.VIEWER)
    with pytest.raises(AuthError) as wrong_agent:
        TokenStore.authorize(agent_viewer, "ns", "b", Role.VIEWER)
    with pytest.raises(AuthError) as viewer_sends:
        TokenStore.authorize(agent_viewer, "ns", "a", Role.OPERATOR)
    assert wrong_agent.value.code == "forbidden" and viewer_sends.value.code == "permission_denied"
    ns_operator = Grant(Role.OPERATOR, "ns")
    TokenStore.authorize(ns_operator, "ns", "anything", Role.OPERATOR)
    with pytest.raises(AuthError):
        TokenStore.authorize(ns_operator, "other", "a", Role.VIEWER)
    TokenStore.authorize(Grant(Role.ADMIN), "any", "thing", Role.OPERATOR)


def test_auth_off_only_when_explicit() -> None:
    assert TokenStore(None, enabled=False).authenticate(None).role is Role.ADMIN
    with pytest.raises(AuthError):
        TokenStore(None).authenticate(None)


def test_agent_scope_needs_a_namespace() -> None:
    with pytest.raises(ValueError, match="namespace"):
        TokenStore(None).create(Grant(Role.VIEWER, None, "a"))
