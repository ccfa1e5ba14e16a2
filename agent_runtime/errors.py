"""The one error tree of the runtime, and the one mapping of errors to what a caller receives.

Every error has a stable `code`. `CODES` is the one table that says, for each code, its HTTP
status, whether retrying may help and who is to blame (the caller's input, this server, or
something upstream: a model provider, a shard, the apiserver). An exception class names its code
once — `class AgentBusy(Error, code="busy")` — and takes the rest from the table; a class whose
instances carry one of several codes (`AuthError`, `RouteError`) passes the code per instance, and
the table still decides the rest.

Only `public` codes reach a client as such. Anything else — an internal error of the tree (a
closed log, a protocol misuse by the shell) or an exception from outside it (a bug) — is answered
as `internal` (HTTP 500) with `TypeName: message`, exactly like an unknown exception.

One shape for every error a client sees, HTTP body and WebSocket frame alike:
`{"type": "error", "code": ..., "message": ..., <optional keys>}` (`error_body`). `body(exc)` and
`http_status(exc)` answer an HTTP request, `frame(exc)` a WebSocket command; the router, the shard
and the CLI use the same functions. WebSocket error frames speak the closed vocabulary of protocol
v1 (`ErrorCode`); a public code outside it goes out as `internal` (with the hint to reconnect).

Bottom layer: this module imports nothing of the runtime.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "CODES",
    "BadFrame",
    "BadJson",
    "BadRequest",
    "Blame",
    "Error",
    "ErrorCode",
    "NotSupported",
    "Spec",
    "TooLarge",
    "body",
    "error_body",
    "frame",
    "http_status",
    "public",
    "read_body",
    "spec",
]


class Blame(enum.StrEnum):
    """Whose fault an error is: it decides whether sending the same thing again can succeed."""

    CALLER = "caller"
    """The request itself is wrong (input, credentials, state it assumes); fix it first."""
    SERVER = "server"
    """This runtime (busy, stopping, starting, a bug)."""
    UPSTREAM = "upstream"
    """Something this runtime depends on: a model provider, a shard, the Kubernetes apiserver."""


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """What a code means for a caller."""

    status: int
    """The HTTP status of a response carrying this code."""
    retryable: bool
    """Whether sending the same request again (later) may succeed."""
    blame: Blame
    public: bool = True
    """Part of the client API (HTTP bodies, WebSocket frames); others are answered as `internal`."""
    hint: str = ""
    """Appended to the message (`message; hint`) when this code is sent for an error of the tree."""


_C, _S, _U = Blame.CALLER, Blame.SERVER, Blame.UPSTREAM

CODES: Final[Mapping[str, Spec]] = {
    # -- the client API: the WebSocket protocol (docs/protocol.md) ------------------------------
    "bad_json": Spec(400, False, _C),
    "bad_frame": Spec(400, False, _C),
    "unknown_type": Spec(400, False, _C),
    "frame_too_large": Spec(413, False, _C),
    "hello_required": Spec(400, False, _C),
    "hello_repeated": Spec(400, False, _C),
    "permission_denied": Spec(403, False, _C),
    "unauthenticated": Spec(401, False, _C),
    "forbidden": Spec(403, False, _C),
    "agent_not_found": Spec(404, False, _C),
    "busy": Spec(429, True, _S),
    "unknown_tool_call": Spec(409, False, _C),
    "internal": Spec(500, True, _S, hint="reconnect with your cursor and resend"),
    # -- the client API: HTTP only ----------------------------------------------------------------
    "bad_request": Spec(400, False, _C),
    "invalid_manifest": Spec(422, False, _C),
    "too_large": Spec(413, False, _C),
    "unavailable": Spec(503, True, _S, hint="retry"),
    "not_supported": Spec(501, False, _C),
    "conflict": Spec(409, False, _C),
    # -- Kubernetes mode: the shard and the router (kube/shard.py, kube/router.py) ----------------
    "agent_starting": Spec(503, True, _S),
    "agent_not_placed": Spec(503, True, _S),
    "agent_moving": Spec(503, True, _S),
    "shard_unavailable": Spec(503, True, _U),
    "shard_timeout": Spec(504, True, _U),
    "bad_path": Spec(400, False, _C),
    "upstream_refused": Spec(502, False, _U),
    # -- the CLI's names for answers without an error body (cli/client.py) ------------------------
    "http_error": Spec(502, False, _U),
    "handshake_failed": Spec(502, False, _U),
    # -- inside the runtime: never sent as such (a caller sees `internal`) -------------------------
    "provider_error": Spec(502, False, _U, public=False),
    "tool_error": Spec(422, False, _C, public=False),
    "invalid_arguments": Spec(422, False, _C, public=False),
    "path_escape": Spec(403, False, _C, public=False),
    "timeout": Spec(504, False, _C, public=False),
    "unknown_tool": Spec(404, False, _C, public=False),
    "event_log": Spec(500, False, _S, public=False),
    "duplicate_client_id": Spec(409, False, _C, public=False),
    "log_closed": Spec(503, True, _S, public=False),
    "executor_closed": Spec(503, False, _S, public=False),
    "protocol_error": Spec(500, False, _S, public=False),
    "protocol_misuse": Spec(500, False, _S, public=False),
    "gap": Spec(500, True, _S, public=False),
    "cursor_ahead": Spec(400, False, _C, public=False),
    "kube_api": Spec(502, False, _U, public=False),
    "kube_config": Spec(500, False, _S, public=False),
    "folder_busy": Spec(503, True, _S, public=False),
    "lock_timeout": Spec(503, True, _S, public=False),
}
"""Every code of the tree: the one place where its HTTP status, retryability and blame are written."""


class ErrorCode(enum.StrEnum):
    """The `code` of a WebSocket `error` frame (and of the JSON body of a refused upgrade request):
    the closed vocabulary of protocol v1. Each is a key of `CODES`."""

    BAD_JSON = "bad_json"
    """The frame is not valid UTF-8 JSON."""
    BAD_FRAME = "bad_frame"
    """The frame is JSON but breaks the schema of its type; `field` names the culprit."""
    UNKNOWN_TYPE = "unknown_type"
    """`type` is a string but not a client frame type."""
    FRAME_TOO_LARGE = "frame_too_large"
    """The frame is longer (in UTF-8 bytes) than the server's limit (`max_bytes`)."""
    HELLO_REQUIRED = "hello_required"
    """A frame other than `hello` came first."""
    HELLO_REPEATED = "hello_repeated"
    """A second `hello` on the same connection (reconnect to move the cursor)."""
    PERMISSION_DENIED = "permission_denied"
    """A `viewer` sent `user_message`, `approval` or `interrupt`."""
    UNAUTHENTICATED = "unauthenticated"
    """Upgrade refused with HTTP 401: no or invalid bearer token."""
    FORBIDDEN = "forbidden"
    """Upgrade refused with HTTP 403: the token does not cover this agent."""
    AGENT_NOT_FOUND = "agent_not_found"
    """Upgrade refused with HTTP 404: no such agent."""
    BUSY = "busy"
    """The agent's mailbox is full (backpressure); resend the same `user_message` `id` later."""
    UNKNOWN_TOOL_CALL = "unknown_tool_call"
    """An `approval` for a tool call that is not waiting for one."""
    INTERNAL = "internal"
    """The server failed; the connection may be closed. Not the client's fault; retrying may help."""


_FRAME_CODES: Final = frozenset(c.value for c in ErrorCode)


# --- the tree ------------------------------------------------------------------------------------


class Error(Exception):
    """The root of the tree. `code`, `http_status`, `retryable` and `blame` are class attributes
    set from `CODES` by the class's `code=` keyword; an instance given another `code` takes that
    code's row (a code outside the table keeps the class's row: a provider's or a tool's own codes).
    `extra()` adds keys of the error body (`field`, ...)."""

    code: str = "internal"
    http_status: int = 500
    retryable: bool = True
    blame: Blame = Blame.SERVER

    def __init_subclass__(cls, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            row = CODES[code]  # a KeyError at import: the code is not in the table
            cls.code, cls.http_status, cls.retryable, cls.blame = code, row.status, row.retryable, row.blame

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
            row = CODES.get(code)
            if row is not None:
                self.http_status, self.retryable, self.blame = row.status, row.retryable, row.blame

    def extra(self) -> dict[str, Any]:
        """Keys the error body carries besides `type`, `code` and `message`."""
        return {}


class BadRequest(Error, code="bad_request"):
    """A query parameter or a request body that is not what the endpoint takes."""


class BadJson(Error, code="bad_json"):
    """A body that is not valid JSON."""


class BadFrame(Error, code="bad_frame"):
    """A body that breaks the schema of the frame it stands for; `field` is the dotted path."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field

    def extra(self) -> dict[str, Any]:
        return {"field": self.field}


class TooLarge(Error, code="too_large"):
    """A request over a size or count limit."""


class NotSupported(Error, code="not_supported"):
    """An endpoint this kind of server does not serve (agents created by kubectl, not by POST)."""


# --- the mapping ---------------------------------------------------------------------------------


def read_body(data: object) -> tuple[str, str] | None:
    """(code, message) of an error body (what a client reads back), or None if `data` is not one."""
    if not isinstance(data, dict):
        return None
    return str(data.get("code")), str(data.get("message"))


def spec(code: str) -> Spec:
    """The row of `code` (KeyError for a code outside the table)."""
    return CODES[code]


def public(exc: BaseException) -> Error | None:
    """`exc` if a client may see it as itself; None for internal errors and bugs (`internal`).
    Both its class's code and its own must be public ones: a provider's or a tool's own code never
    passes for one of the API's."""
    if isinstance(exc, Error) and CODES[type(exc).code].public:
        row = CODES.get(exc.code)
        if row is not None and row.public:
            return exc
    return None


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The error shape of HTTP bodies and WebSocket frames; optional keys only when not None."""
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    out.update((k, v) for k, v in extra.items() if v is not None)
    return out


def _bug(exc: BaseException, extra: dict[str, Any]) -> dict[str, Any]:
    return error_body(ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}", **extra)


def _message(err: Error, code: str) -> str:
    hint = CODES[code].hint
    return f"{err}; {hint}" if hint else str(err)


def http_status(exc: BaseException) -> int:
    """The HTTP status answering `exc` (500 for what is not public)."""
    err = public(exc)
    return err.http_status if err is not None else CODES[ErrorCode.INTERNAL.value].status


def body(exc: BaseException, **extra: Any) -> dict[str, Any]:
    """The JSON body of an HTTP response answering `exc`; `extra` adds keys (e.g. the message `id`)."""
    err = public(exc)
    if err is None:
        return _bug(exc, extra)
    return error_body(err.code, _message(err, err.code), **err.extra(), **extra)


def frame(exc: BaseException, **extra: Any) -> dict[str, Any]:
    """The WebSocket `error` frame answering `exc`: `body(exc)` in the protocol's vocabulary (a
    public code the protocol does not name goes out as `internal`, with the hint to reconnect)."""
    err = public(exc)
    if err is None:
        return _bug(exc, extra)
    code = err.code if err.code in _FRAME_CODES else ErrorCode.INTERNAL.value
    return error_body(code, _message(err, code), **err.extra(), **extra)
