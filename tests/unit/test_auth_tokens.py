"""Token grants: scope and role decide; refusals carry distinct codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.auth import AuthError, Grant, InvalidTokenName, Role, TokenStore, check_token_name


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


# -- token names (issue 17, item 7): 1-64 of [A-Za-z0-9._-], starting with a letter or digit ----------

BAD_NAMES = ["", "x" * 65, "has space", "tab\tname", "new\nline", "-leading-dash", ".hidden", "_under",
             "semi;colon", "slash/name", "quote'", "ünïcode", "emoji🙂", "nul\0byte", "\u202eRTL"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_token_names_are_refused_with_a_typed_422(name: str) -> None:
    store = TokenStore(None)
    with pytest.raises(InvalidTokenName) as err:
        store.create(Grant(Role.VIEWER, "ns", "a", name=name))
    assert (err.value.code, err.value.http_status) == ("invalid_token_name", 422)
    assert err.value.extra() == {"field": "name"}
    assert "1-64" in str(err.value)
    assert store._grants == {}  # nothing created


@pytest.mark.parametrize("name", [123, 1.5, True, ["a"], {"a": 1}])
def test_a_token_name_must_be_a_string(name: object) -> None:
    with pytest.raises(InvalidTokenName):
        check_token_name(name)


@pytest.mark.parametrize("name", ["a", "ci-bot", "Deploy_2026.12", "x" * 64, "9lives"])
def test_good_token_names_are_kept_with_the_grant(tmp_path: Path, name: str) -> None:
    assert check_token_name(name) == name
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create(Grant(Role.VIEWER, "ns", "a", name=name))
    assert TokenStore(tmp_path / "tokens.json").authenticate(f"Bearer {token}").name == name


def test_a_token_without_a_name_is_still_fine(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create(Grant(Role.VIEWER, "ns", "a"))
    assert TokenStore(tmp_path / "tokens.json").authenticate(f"Bearer {token}").name is None
