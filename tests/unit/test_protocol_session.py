"""The sans-IO client session: every frame, every refusal, dedupe and gaps, docs drift."""

from __future__ import annotations

import pathlib
import re
import typing

import orjson
import pydantic
import pytest

from agent_runtime.events import Event
from agent_runtime.protocol import frames, session
from agent_runtime.protocol.frames import ErrorCode
from agent_runtime.protocol.session import ClientSession, State

pytestmark = pytest.mark.filterwarnings("error")

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def j(obj: object) -> str:
    return orjson.dumps(obj).decode()


def hello(cursor: int = 0) -> str:
    return j({"type": "hello", "cursor": cursor})


def ev(seq: int, kind: str = "status", **data: object) -> Event:
    return Event(seq=seq, kind=kind, data=dict(data), ts=float(seq))


def live(role: frames.Role = "operator", cursor: int = 0, head: int | None = None) -> ClientSession:
    s = ClientSession(role)
    assert s.receive(hello(cursor)) == [session.Hello(cursor)]
    s.welcome(cursor if head is None else head, "default/bot")
    return s


def server_frame(frame: dict[str, object]) -> object:
    """Every frame the session builds must be valid against the server-frame models."""
    return frames.SERVER_FRAME.validate_python(frame)


def only_error(out: list[session.Output]) -> dict[str, typing.Any]:
    assert len(out) == 1 and isinstance(out[0], dict), out
    server_frame(out[0])
    assert out[0]["type"] == "error"
    return out[0]


# --- client frames → commands ------------------------------------------------------------------


def test_hello_yields_command_and_welcome_shape() -> None:
    s = ClientSession("viewer")
    states = [s.state]
    assert s.receive(hello(7)) == [session.Hello(7)]
    states.append(s.state)
    assert s.cursor == 7
    frame = s.welcome(12, "team-a/helper")
    assert frame == {"type": "welcome", "protocol": 1, "head": 12, "agent": "team-a/helper", "role": "viewer"}
    assert isinstance(server_frame(frame), frames.WelcomeFrame)
    states.append(s.state)
    assert states == [State.AWAIT_HELLO, State.AWAIT_WELCOME, State.LIVE]


@pytest.mark.parametrize(
    ("frame", "command"),
    [
        ({"type": "user_message", "id": "c-1", "text": "hi"}, session.SendUserMessage("c-1", "hi")),
        ({"type": "user_message", "id": "c-2", "text": ""}, session.SendUserMessage("c-2", "")),
        ({"type": "approval", "tool_call_id": "t1", "decision": "allow"}, session.SendApproval("t1", "allow")),
        ({"type": "approval", "tool_call_id": "t1", "decision": "deny"}, session.SendApproval("t1", "deny")),
        ({"type": "interrupt"}, session.SendInterrupt()),
    ],
)
def test_operator_frames_yield_commands(frame: dict[str, object], command: session.Command) -> None:
    s = live("operator")
    assert s.receive(j(frame)) == [command]
    assert s.receive(j(frame).encode()) == [command], "bytes are accepted too"


def test_frames_may_be_pipelined_before_welcome() -> None:
    s = ClientSession("operator")
    s.receive(hello())
    assert s.receive(j({"type": "interrupt"})) == [session.SendInterrupt()]


# --- refusals: one typed error code each, the session stays usable -----------------------------

BIG = "x" * (frames.MAX_MESSAGE_CHARS + 1)

BAD_FRAMES: list[tuple[str, str | bytes, ErrorCode, str | None]] = [
    # (case id, raw text, code, field)
    ("not-json", "{nope", ErrorCode.BAD_JSON, None),
    ("empty", "", ErrorCode.BAD_JSON, None),
    ("trailing", '{"type": "interrupt"} x', ErrorCode.BAD_JSON, None),
    ("nan", '{"type": "hello", "cursor": NaN}', ErrorCode.BAD_JSON, None),
    ("bad-utf8", b'{"type": "interrupt", "x": "\xff"}', ErrorCode.BAD_JSON, None),
    ("lone-surrogate", '{"type": "user_message", "id": "a", "text": "\ud800"}', ErrorCode.BAD_JSON, None),
    ("array", "[1, 2]", ErrorCode.BAD_FRAME, None),
    ("string", '"hello"', ErrorCode.BAD_FRAME, None),
    ("null", "null", ErrorCode.BAD_FRAME, None),
    ("no-type", '{"cursor": 0}', ErrorCode.BAD_FRAME, "type"),
    ("type-not-str", '{"type": 1}', ErrorCode.BAD_FRAME, "type"),
    ("unknown-type", '{"type": "subscribe"}', ErrorCode.UNKNOWN_TYPE, None),
    ("server-type", '{"type": "welcome"}', ErrorCode.UNKNOWN_TYPE, None),
    ("extra-key", '{"type": "interrupt", "now": true}', ErrorCode.BAD_FRAME, "now"),
    ("um-no-id", '{"type": "user_message", "text": "x"}', ErrorCode.BAD_FRAME, "id"),
    ("um-empty-id", '{"type": "user_message", "id": "", "text": "x"}', ErrorCode.BAD_FRAME, "id"),
    ("um-long-id", j({"type": "user_message", "id": "i" * 129, "text": "x"}), ErrorCode.BAD_FRAME, "id"),
    ("um-int-id", '{"type": "user_message", "id": 5, "text": "x"}', ErrorCode.BAD_FRAME, "id"),
    ("um-no-text", '{"type": "user_message", "id": "a"}', ErrorCode.BAD_FRAME, "text"),
    ("um-text-list", '{"type": "user_message", "id": "a", "text": ["x"]}', ErrorCode.BAD_FRAME, "text"),
    ("um-text-long", j({"type": "user_message", "id": "a", "text": BIG}), ErrorCode.BAD_FRAME, "text"),
    ("ap-decision", '{"type": "approval", "tool_call_id": "t", "decision": "yes"}', ErrorCode.BAD_FRAME, "decision"),
    ("ap-no-tool", '{"type": "approval", "decision": "allow"}', ErrorCode.BAD_FRAME, "tool_call_id"),
]


@pytest.mark.parametrize(("raw", "code", "field"), [c[1:] for c in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES])
def test_bad_frame_is_refused_and_next_good_frame_is_processed(
    raw: str | bytes, code: ErrorCode, field: str | None
) -> None:
    s = live("operator")
    error = only_error(s.receive(raw))
    assert error["code"] == code
    assert error.get("field") == field
    if field is not None:
        assert field in error["message"], "the message names the field"
    assert s.receive(j({"type": "user_message", "id": "ok", "text": "next"})) == [
        session.SendUserMessage("ok", "next")
    ]


BAD_HELLOS = [
    ('{"type": "hello"}', "cursor"),
    ('{"type": "hello", "cursor": -1}', "cursor"),
    ('{"type": "hello", "cursor": "3"}', "cursor"),
    ('{"type": "hello", "cursor": 3.0}', "cursor"),
    ('{"type": "hello", "cursor": true}', "cursor"),
    ('{"type": "hello", "cursor": 0, "agent": "x"}', "agent"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_HELLOS)
def test_bad_hello_is_refused_then_a_good_hello_works(raw: str, field: str) -> None:
    s = ClientSession("operator")
    error = only_error(s.receive(raw))
    assert (error["code"], error["field"]) == (ErrorCode.BAD_FRAME, field)
    assert s.state is State.AWAIT_HELLO
    assert s.receive(hello(2)) == [session.Hello(2)]


def test_bad_frame_error_names_the_user_message_id() -> None:
    s = live()
    error = only_error(s.receive('{"type": "user_message", "id": "m-9", "text": 1}'))
    assert error["id"] == "m-9"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "user_message", "id": "a", "text": "x"},
        {"type": "approval", "tool_call_id": "t", "decision": "allow"},
        {"type": "interrupt"},
    ],
)
def test_hello_required_first_then_hello_still_works(frame: dict[str, object]) -> None:
    s = ClientSession("operator")
    assert only_error(s.receive(j(frame)))["code"] == ErrorCode.HELLO_REQUIRED
    assert s.receive(hello()) == [session.Hello(0)]
    assert s.receive(j(frame)) != []


def test_hello_repeated_keeps_the_cursor() -> None:
    s = live(cursor=3, head=5)
    assert only_error(s.receive(hello(0)))["code"] == ErrorCode.HELLO_REPEATED
    assert s.cursor == 3
    assert s.state is State.LIVE


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "user_message", "id": "a", "text": "x"},
        {"type": "approval", "tool_call_id": "t", "decision": "deny"},
        {"type": "interrupt"},
    ],
)
def test_viewer_is_refused_but_may_hello_and_watch(frame: dict[str, object]) -> None:
    s = ClientSession("viewer")
    assert s.receive(hello(0)) == [session.Hello(0)]
    s.welcome(1, "default/bot")
    error = only_error(s.receive(j(frame)))
    assert error["code"] == ErrorCode.PERMISSION_DENIED
    assert error.get("id") == frame.get("id")
    assert s.event(ev(1)) == ev(1).to_frame()


def test_oversize_frame_by_utf8_bytes_not_code_points() -> None:
    s = ClientSession("operator", max_frame_bytes=64)
    s.receive(hello())
    s.welcome(0, "default/bot")
    fits = j({"type": "user_message", "id": "a", "text": "x" * 20})
    assert len(fits.encode()) <= 64
    assert s.receive(fits) == [session.SendUserMessage("a", "x" * 20)]
    # 20 code points but 80 bytes: too large though len(text) < 64.
    wide = j({"type": "user_message", "id": "a", "text": "\U0001f600" * 20})
    assert len(wide) < 64 < len(wide.encode())
    error = only_error(s.receive(wide))
    assert (error["code"], error["max_bytes"]) == (ErrorCode.FRAME_TOO_LARGE, 64)
    assert only_error(s.receive(b"{" * 65))["code"] == ErrorCode.FRAME_TOO_LARGE
    assert only_error(s.receive("not json at all, and far too long " * 10))["code"] == ErrorCode.FRAME_TOO_LARGE
    assert s.receive(fits) == [session.SendUserMessage("a", "x" * 20)], "still usable"


def test_exactly_max_bytes_fits() -> None:
    frame = j({"type": "user_message", "id": "a", "text": ""})
    frame = frame.replace('""', '"' + "é" * 10 + '"')
    s = ClientSession("operator", max_frame_bytes=len(frame.encode()))
    s.receive(hello())
    assert s.receive(frame) == [session.SendUserMessage("a", "é" * 10)]
    s2 = ClientSession("operator", max_frame_bytes=len(frame.encode()) - 1)
    s2.receive(hello())
    assert only_error(s2.receive(frame))["code"] == ErrorCode.FRAME_TOO_LARGE


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        ClientSession("admin")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ClientSession("viewer", max_frame_bytes=0)


# --- outbound: events, dedupe, gaps ------------------------------------------------------------


def test_event_frame_dedupe_and_gap() -> None:
    s = live(cursor=2, head=4)
    assert s.cursor == 2
    assert s.event(ev(1)) is None
    assert s.event(ev(2)) is None
    frame = s.event(ev(3, "user_message", text="hi"))
    assert frame == {"type": "event", "seq": 3, "kind": "user_message", "data": {"text": "hi"}, "ts": 3.0}
    assert isinstance(server_frame(frame), frames.EventFrame)
    assert s.cursor == 3
    assert s.event(ev(3)) is None
    with pytest.raises(session.GapError) as gap:
        s.event(ev(6))
    assert (gap.value.have, gap.value.got, gap.value.message_id) == (3, 6, None)
    assert s.cursor == 3, "a gap changes nothing"
    for seq in (4, 5, 6):
        assert s.event(ev(seq)) is not None
    assert s.cursor == 6


def test_cursor_ahead_of_head_refuses_and_allows_a_new_hello() -> None:
    s = ClientSession("operator")
    s.receive(hello(10))
    with pytest.raises(session.CursorAheadError) as err:
        s.welcome(4, "default/bot")
    assert only_error([err.value.frame])["field"] == "cursor"
    assert s.state is State.AWAIT_HELLO and s.cursor == 0
    assert s.receive(hello(0)) == [session.Hello(0)]
    assert s.welcome(4, "default/bot")["head"] == 4


def test_outbound_out_of_order_is_a_shell_bug() -> None:
    s = ClientSession("operator")
    calls: list[typing.Callable[[], object]] = [
        lambda: s.welcome(0, "a/b"),
        lambda: s.event(ev(1)),
        lambda: s.delta("m", "x", 0),
        lambda: s.ack("a", 1, False),
    ]
    for call in calls:
        with pytest.raises(session.LocalProtocolError):
            call()
    s.receive(hello())
    with pytest.raises(session.LocalProtocolError):
        s.event(ev(1))
    s.welcome(0, "a/b")
    with pytest.raises(session.LocalProtocolError):
        s.welcome(0, "a/b")


def test_ack_frame() -> None:
    s = ClientSession("operator")
    s.receive(hello())
    assert s.ack("c-0", 1, False)["seq"] == 1, "a pipelined user_message may be acked before welcome"
    s.welcome(0, "default/bot")
    for duplicate in (False, True):
        frame = s.ack("c-1", 5, duplicate)
        assert frame == {"type": "ack", "id": "c-1", "seq": 5, "duplicate": duplicate}
        assert isinstance(server_frame(frame), frames.AckFrame)


# --- outbound: deltas --------------------------------------------------------------------------


def test_delta_chunks_mid_message_attach_overlap_and_gap() -> None:
    s = live()
    # Attach mid-message: the text so far as one delta at offset 0.
    first = s.delta("m1", "Hello, wor", 0)
    assert first == {"type": "delta", "message_id": "m1", "text": "Hello, wor", "offset": 0}
    assert isinstance(server_frame(first), frames.DeltaFrame)
    # Live chunks that the client already has are dropped; an overlapping one is trimmed.
    assert s.delta("m1", "Hello", 0) is None
    assert s.delta("m1", "", 10) is None
    assert s.delta("m1", "world", 7) == {"type": "delta", "message_id": "m1", "text": "ld", "offset": 10}
    assert s.delta("m1", "!", 12) == {"type": "delta", "message_id": "m1", "text": "!", "offset": 12}
    with pytest.raises(session.GapError) as gap:
        s.delta("m1", "?", 20)
    assert (gap.value.have, gap.value.got, gap.value.message_id) == (13, 20, "m1")
    # A new message starts at 0; a chunk past 0 of an unknown message is a gap.
    with pytest.raises(session.GapError):
        s.delta("m2", "tail", 4)
    assert s.delta("m2", "new", 0) == {"type": "delta", "message_id": "m2", "text": "new", "offset": 0}
    with pytest.raises(ValueError):
        s.delta("m2", "x", -1)


def test_delta_positions_are_bounded() -> None:
    s = live()
    for i in range(session.MAX_TRACKED_MESSAGES + 5):
        assert s.delta(f"m{i}", "abc", 0) is not None
    newest = f"m{session.MAX_TRACKED_MESSAGES + 4}"
    assert s.delta(newest, "abc", 0) is None


# --- encoding, schema and docs -----------------------------------------------------------------


def test_encode_frame_roundtrip() -> None:
    frame = live().event(ev(1, "assistant_message", text="héllo \U0001f600"))
    assert frame is not None
    text = frames.encode_frame(frame)
    assert isinstance(text, str) and " " not in text.replace("héllo ", "")
    assert orjson.loads(text) == frame


def test_error_frame_builder_validates() -> None:
    for code in ErrorCode:
        frame = frames.error_frame(code, "m")
        assert list(frame) == ["type", "code", "message"]
        assert isinstance(server_frame(frame), frames.ErrorFrame)
    with pytest.raises(pydantic.ValidationError):
        server_frame({"type": "error", "code": "teapot", "message": "m"})


def test_client_frame_adapter_is_one_discriminated_union() -> None:
    parsed = frames.CLIENT_FRAME.validate_json('{"type": "approval", "tool_call_id": "t", "decision": "deny"}')
    assert isinstance(parsed, frames.ApprovalFrame)
    assert set(frames.CLIENT_FRAME_TYPES) == {
        typing.get_args(m.model_fields["type"].annotation)[0]
        for m in (frames.HelloFrame, frames.UserMessageFrame, frames.ApprovalFrame, frames.InterruptFrame)
    }


def test_docs_cover_every_frame_type_and_error_code() -> None:
    """docs/protocol.md is the contract: it must not drift from the code."""
    text = DOCS.read_text()
    server_types = {"welcome", "event", "delta", "ack", "error"}
    for frame_type in frames.CLIENT_FRAME_TYPES | server_types:
        assert f'"type": "{frame_type}"' in text, f"no example of the {frame_type} frame"
    for code in ErrorCode:
        row = re.search(rf"^\|\s*`{code.value}`\s*\|\s*(\S+)\s*\|", text, re.MULTILINE)
        assert row is not None, f"error code {code.value} is not in the table"
        assert row.group(1) == str(frames.HTTP_STATUS.get(code, "—")), f"HTTP status of {code.value}"
