"""The one error tree (`agent_runtime.errors`): every class has a code, an HTTP status, a retry flag
and a blame; codes are unique; one exception maps to one code over HTTP and WebSocket; a bug is
answered as `internal` 500, exactly as the server always has."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent_runtime
from agent_runtime import errors
from agent_runtime.agent.mail import AgentBusy, AgentStopped, UnknownToolCall
from agent_runtime.auth import AuthError
from agent_runtime.eventlog.base import LogClosed
from agent_runtime.host import AgentNotFound
from agent_runtime.kube.routes import RouteError
from agent_runtime.manifest import ManifestError
from agent_runtime.protocol import frames
from agent_runtime.protocol.session import LocalProtocolError


def _import_all() -> None:
    for module in pkgutil.walk_packages(agent_runtime.__path__, "agent_runtime."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def _tree(cls: type[errors.Error] = errors.Error) -> Iterator[type[errors.Error]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _tree(sub)


_import_all()
CLASSES = sorted(set(_tree()), key=lambda c: f"{c.__module__}.{c.__qualname__}")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_error_class_has_a_code_status_retry_flag_and_blame(cls: type[errors.Error]) -> None:
    assert cls.code in errors.CODES, f"{cls.__qualname__}.code {cls.code!r} is not in errors.CODES"
    row = errors.CODES[cls.code]
    assert (cls.http_status, cls.retryable, cls.blame) == (row.status, row.retryable, row.blame)
    assert 400 <= cls.http_status <= 599 and isinstance(cls.retryable, bool) and isinstance(cls.blame, errors.Blame)


def test_the_tree_holds_the_runtime_exceptions() -> None:
    names = {c.__qualname__ for c in CLASSES}
    for name in ("AgentBusy", "AgentStopped", "UnknownToolCall", "AgentNotFound", "AuthError", "ManifestError",
                 "RouteError", "ProviderError", "ToolError", "EventLogError", "ExecutorClosed", "ProtocolError",
                 "ApiError", "FolderBusy", "LockTimeout", "KubeConfigError"):
        assert name in names, name
    assert len(CLASSES) >= 30


def test_codes_are_unique() -> None:
    """Each code is declared by one class (subclasses that do not name a code share their parent's)."""
    declared: dict[str, str] = {}
    for cls in CLASSES:
        if "code" in vars(cls):
            assert cls.code not in declared, f"{cls.__qualname__} and {declared[cls.code]} both declare {cls.code!r}"
            declared[cls.code] = cls.__qualname__


def test_every_frame_code_is_in_the_table_and_the_upgrade_statuses_come_from_it() -> None:
    for code in errors.ErrorCode:
        assert code.value in errors.CODES and errors.CODES[code.value].public
    assert frames.HTTP_STATUS == {frames.ErrorCode.UNAUTHENTICATED: 401, frames.ErrorCode.FORBIDDEN: 403,
                                  frames.ErrorCode.AGENT_NOT_FOUND: 404}


def test_errors_imports_nothing_of_the_runtime() -> None:
    tree = ast.parse(Path(errors.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module is not None and not node.module.startswith("agent_runtime"), node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("agent_runtime") for a in node.names)


PUBLIC = [errors.Error("m", code=code) for code, row in errors.CODES.items() if row.public] + [
    AgentBusy("agent ns/a has 64 messages waiting"), AgentStopped("agent ns/a stopped"),
    UnknownToolCall("no approval is pending for tool call 'c1'"), AgentNotFound("ns/a"),
    AuthError("unauthenticated", "unknown token"), AuthError("forbidden", "no"), AuthError("permission_denied", "no"),
    ManifestError("bad", field="spec.x"), RouteError("agent_not_placed", "later"),
    errors.BadFrame("body must be …", "id"), errors.BadJson("x"), errors.BadRequest("x"), errors.TooLarge("x"),
]


@pytest.mark.parametrize("exc", PUBLIC, ids=lambda e: f"{type(e).__name__}:{e.code}")
def test_one_exception_one_code_over_http_and_ws(exc: errors.Error) -> None:
    body, frame = errors.body(exc), errors.frame(exc)
    assert body["type"] == frame["type"] == "error"
    assert body["code"] == exc.code and errors.http_status(exc) == errors.CODES[exc.code].status == exc.http_status
    if exc.code in set(errors.ErrorCode):
        assert frame == body  # the same frame, key for key
    else:  # a code protocol v1 does not name: the client gets `internal`, told to reconnect
        assert frame["code"] == "internal" and frame["message"].endswith("; reconnect with your cursor and resend")
    frames.SERVER_FRAME.validate_python(frame)  # a valid frame of the protocol


# What the server answered before the tree (server.py's errors_middleware and _command_error),
# pinned: (HTTP status, HTTP body) and the WebSocket frame.
GOLDEN: list[tuple[Exception, int, dict[str, object], dict[str, object]]] = [
    (AgentBusy("agent ns/a has 64 messages waiting"), 429,
     {"type": "error", "code": "busy", "message": "agent ns/a has 64 messages waiting"},
     {"type": "error", "code": "busy", "message": "agent ns/a has 64 messages waiting"}),
    (AgentStopped("agent ns/a stopped"), 503,
     {"type": "error", "code": "unavailable", "message": "agent ns/a stopped; retry"},
     {"type": "error", "code": "internal", "message": "agent ns/a stopped; reconnect with your cursor and resend"}),
    (AgentNotFound("ns/a"), 404,
     {"type": "error", "code": "agent_not_found", "message": "no agent 'ns/a'"},
     {"type": "error", "code": "agent_not_found", "message": "no agent 'ns/a'"}),
    (UnknownToolCall("no approval is pending for tool call 'c1'"), 409,
     {"type": "error", "code": "unknown_tool_call", "message": "no approval is pending for tool call 'c1'"},
     {"type": "error", "code": "unknown_tool_call", "message": "no approval is pending for tool call 'c1'"}),
    (AuthError("permission_denied", "role 'viewer' may not do this"), 403,
     {"type": "error", "code": "permission_denied", "message": "role 'viewer' may not do this"},
     {"type": "error", "code": "permission_denied", "message": "role 'viewer' may not do this"}),
    (ManifestError("must be a mapping", field="spec"), 422,
     {"type": "error", "code": "invalid_manifest", "message": "spec: must be a mapping", "field": "spec"}, {}),
    (ManifestError("invalid YAML"), 422,
     {"type": "error", "code": "invalid_manifest", "message": "invalid YAML", "field": ""}, {}),
]


@pytest.mark.parametrize("exc, status, body, frame", GOLDEN, ids=lambda v: type(v).__name__)
def test_the_wire_is_what_it_was(exc: Exception, status: int, body: dict[str, object], frame: dict[str, object]) -> None:
    assert (errors.http_status(exc), errors.body(exc)) == (status, body)
    if frame:
        assert errors.frame(exc) == frame
    assert errors.body(exc, id="m1") == {**body, "id": "m1"}  # a refused user_message names its id


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyError("k"), LogClosed("event log x is not open"),
                                 LocalProtocolError("event before welcome")], ids=lambda e: type(e).__name__)
def test_a_bug_or_an_internal_error_is_internal_500(exc: Exception) -> None:
    """Not public: `internal`, 500, `TypeName: message` (as the server has always answered a bug;
    no code of the runtime's inner errors leaks), over HTTP and WebSocket alike."""
    expected = {"type": "error", "code": "internal", "message": f"{type(exc).__name__}: {exc}"}
    assert errors.public(exc) is None
    assert (errors.http_status(exc), errors.body(exc)) == (500, expected)
    assert errors.frame(exc) == expected
    assert errors.frame(exc, id="m1") == {**expected, "id": "m1"}


def test_an_instance_code_takes_its_row_and_a_foreign_code_keeps_the_class_row() -> None:
    assert (AuthError("forbidden", "x").http_status, AuthError("forbidden", "x").status) == (403, 403)
    assert RouteError("agent_not_found", "x").status == 404 and not RouteError("agent_not_found", "x").retryable
    from agent_runtime.providers.base import ProviderError
    from agent_runtime.tools.base import ToolError

    err = ProviderError("overloaded", retryable=True, code="unavailable", status=529)
    assert (err.code, err.retryable, err.status, err.http_status, err.blame) == ("unavailable", True, 529, 502, "upstream")
    assert errors.public(err) is None  # a provider's own code never passes for one of the API's
    tool = ToolError("gone", code="not_found")
    assert (tool.code, tool.http_status, errors.public(tool)) == ("not_found", 422, None)


def test_error_body_drops_unset_keys() -> None:
    assert errors.error_body("bad_frame", "m", field=None, id="x") == {"type": "error", "code": "bad_frame",
                                                                      "message": "m", "id": "x"}
    assert errors.read_body({"type": "error", "code": "busy", "message": "m"}) == ("busy", "m")
    assert errors.read_body("not json") is None
