"""Properties of the client protocol across reconnects (hypothesis).

1. A client that disconnects at arbitrary points and reconnects with its cursor ends with exactly
   the transcript of a client that stayed connected: no gap, no duplicate — for events, and for
   the streaming text of the message in progress (mid-message attach, overlapping live chunks).
2. A `user_message` resent with the same id (also across reconnects) is committed once and every
   ack carries the original seq — against the real `MemoryEventLog` and its `DuplicateClientId`.

The "shell" here is the few lines a WebSocket handler runs around `ClientSession`: catch-up from
the log, a live stream that overlaps it (fed deliberately with duplicates), and the `GapError`
handler that fetches what is missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime.eventlog.base import DuplicateClientId
from agent_runtime.eventlog.memory import MemoryEventLog
from agent_runtime.events import Event, NewEvent
from agent_runtime.protocol import frames, session
from agent_runtime.protocol.session import ClientSession

pytestmark = pytest.mark.filterwarnings("error")

SETTINGS = settings(max_examples=200, deadline=None)


def hello(cursor: int) -> str:
    return frames.encode_frame({"type": "hello", "cursor": cursor})


# --- the world: a log of events and the assistant message being streamed ----------------------


@dataclasses.dataclass
class World:
    log: list[Event] = dataclasses.field(default_factory=list)
    message_id: str | None = None
    text: str = ""
    chunks: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (offset, text)
    messages: int = 0

    def commit(self, kind: str, data: dict[str, typing.Any]) -> Event:
        event = Event(seq=len(self.log) + 1, kind=kind, data=data, ts=float(len(self.log) + 1))
        self.log.append(event)
        return event


# --- a client: asserts on every frame that it never sees a gap or a duplicate -------------------


@dataclasses.dataclass
class Client:
    """What a client program keeps across connections: the transcript and the text in progress."""

    session: ClientSession | None = None
    events: list[dict[str, typing.Any]] = dataclasses.field(default_factory=list)
    texts: dict[str, str] = dataclasses.field(default_factory=dict)
    base: int = 0
    """Where this client's transcript starts (it already had `1..base`)."""

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else self.base

    @property
    def live(self) -> ClientSession:
        assert self.session is not None
        return self.session

    def got(self, frame: dict[str, typing.Any] | None) -> None:
        if frame is None:
            return
        frames.SERVER_FRAME.validate_python(frame)
        if frame["type"] == "event":
            assert frame["seq"] == self.last_seq + 1, "gap or duplicate event"
            self.events.append(frame)
            if frame["kind"] == "assistant_message" and frame["data"]["message_id"] in self.texts:
                assert self.texts.pop(frame["data"]["message_id"]) == frame["data"]["text"]
        elif frame["type"] == "delta":
            have = self.texts.get(frame["message_id"], "")
            assert frame["offset"] == len(have), "gap or overlap in streamed text"
            assert frame["text"], "no empty deltas"
            self.texts[frame["message_id"]] = have + frame["text"]
        else:  # pragma: no cover - nothing else is sent here
            raise AssertionError(frame)


def connect(world: World, client: Client) -> Client:
    """A new connection: hello with the client's cursor; streamed text restarts from the top."""
    s = ClientSession("viewer")
    assert s.receive(hello(client.last_seq)) == [session.Hello(client.last_seq)]
    welcome = s.welcome(len(world.log), "default/bot")
    assert welcome["head"] == len(world.log)
    client.session = s
    client.texts.clear()
    return client


# --- the shell ---------------------------------------------------------------------------------


def send_event(client: Client, world: World, event: Event) -> None:
    try:
        frame = client.live.event(event)
    except session.GapError as gap:  # fetch the missing range from the log, then retry
        assert gap.message_id is None and gap.have == client.last_seq
        for missing in world.log[gap.have : gap.got - 1]:
            client.got(client.live.event(missing))
        frame = client.live.event(event)
    client.got(frame)


def send_delta(client: Client, world: World, message_id: str, text: str, offset: int) -> None:
    try:
        frame = client.live.delta(message_id, text, offset)
    except session.GapError as gap:  # send the text so far, then retry
        assert gap.message_id == message_id == world.message_id
        client.got(client.live.delta(message_id, world.text, 0))
        frame = client.live.delta(message_id, text, offset)
    client.got(frame)


def reconnect(
    world: World, client: Client, page: int, live_from: int, old: int, snap: int | None, chunk_from: int
) -> None:
    """Hello with the client's cursor, a catch-up page, an overlapping live stream, the rest."""
    cursor = client.last_seq
    connect(world, client)
    head = len(world.log)
    for event in world.log[cursor : cursor + page]:  # one page of catch-up (maybe short)
        send_event(client, world, event)
    for event in world.log[min(live_from, head) :]:  # live stream, subscribed "earlier": overlaps
        send_event(client, world, event)
    if head:
        send_event(client, world, world.log[old % head])  # any event again (a dup, or a gap to fill)
    for event in world.log[client.live.cursor :]:  # finish catch-up up to head
        send_event(client, world, event)
    if world.message_id is not None:  # attach mid-message: text so far, then overlapping chunks
        if snap is not None:
            send_delta(client, world, world.message_id, world.text[:snap], 0)
        for offset, chunk in world.chunks[chunk_from:]:
            send_delta(client, world, world.message_id, chunk, offset)


# --- property 1: reconnects are exact ----------------------------------------------------------

Op = tuple[typing.Any, ...]
small = st.integers(0, 8)
tiny = st.integers(0, 2)
WORK = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(["status", "tool_call", "tool_result", "usage"])),
    st.tuples(st.just("chunk"), st.text(min_size=1, max_size=4)),
    st.tuples(st.just("chunk"), st.text(min_size=1, max_size=4)),
    st.tuples(st.just("finish")),
)
# page, live_back, old, snap_back (100: no snapshot at all), chunk_back
ATTACH = st.tuples(tiny, tiny, small, st.one_of(small, st.just(100)), tiny)
# One segment: work while the client is connected, it drops, work while it is away, it reattaches.
SEGMENTS = st.lists(st.tuples(st.lists(WORK, max_size=8), st.lists(WORK, max_size=8), ATTACH), max_size=8)


def do(world: World, op: Op, listeners: tuple[Client, ...]) -> None:
    """One step of the agent, published live to the connected clients."""
    match op:
        case ("event", kind):
            event = world.commit(kind, {"n": len(world.log)})
            for c in listeners:
                send_event(c, world, event)
        case ("chunk", text):
            if world.message_id is None:
                world.messages += 1
                world.message_id, world.text, world.chunks = f"m{world.messages}", "", []
            offset = len(world.text)
            world.text += text
            world.chunks.append((offset, text))
            for c in listeners:
                send_delta(c, world, world.message_id, text, offset)
        case ("finish",) if world.message_id is not None:
            event = world.commit("assistant_message", {"message_id": world.message_id, "text": world.text})
            world.message_id, world.text, world.chunks = None, "", []
            for c in listeners:
                send_event(c, world, event)
        case _:
            pass


def attach(world: World, client: Client, page: int, live_back: int, old: int, snap_back: int, chunk_back: int) -> None:
    snap: int | None
    if snap_back > len(world.text):
        # No snapshot: the next live chunk is past what the client has: the GapError path.
        snap, chunk_from = None, min(len(world.chunks) - chunk_back, len(world.chunks) - 1)
    else:
        # The text so far as of the subscription, then the live chunks queued since then (the
        # queue starts at or before the chunk that crosses `snap`: they overlap it).
        snap = len(world.text) - snap_back
        crossing = next((i for i, (o, c) in enumerate(world.chunks) if o + len(c) > snap), len(world.chunks))
        chunk_from = crossing - chunk_back
    reconnect(
        world,
        client,
        page=page,
        live_from=max(len(world.log) - live_back, 0),
        old=old,
        snap=snap,
        chunk_from=max(chunk_from, 0),
    )


@SETTINGS
@given(SEGMENTS)
def test_reconnecting_client_ends_with_the_connected_clients_transcript(
    segments: list[tuple[list[Op], list[Op], tuple[int, int, int, int, int]]],
) -> None:
    world = World()
    ref = connect(world, Client())  # stays connected throughout
    client = connect(world, Client())
    for online, away, params in segments:
        for op in online:
            do(world, op, (ref, client))
        client.session = None  # the connection drops
        for op in away:
            do(world, op, (ref,))
        attach(world, client, *params)

    assert [f["seq"] for f in ref.events] == list(range(1, len(world.log) + 1))
    assert client.events == ref.events
    assert client.live.cursor == ref.live.cursor == len(world.log)
    if world.message_id is not None:
        assert client.texts[world.message_id] == ref.texts[world.message_id] == world.text


@SETTINGS
@given(st.lists(st.integers(1, 30), max_size=80), st.integers(0, 30))
def test_any_feed_order_delivers_each_seq_once_in_order(feed: list[int], cursor: int) -> None:
    """Whatever the shell feeds (dups, old, far ahead), with the gap handler: exactly cursor+1..max."""
    world = World()
    for _ in range(30):
        world.commit("status", {})
    client = connect(world, Client(base=cursor))
    for seq in feed:
        send_event(client, world, world.log[seq - 1])
    top = max([cursor, *feed])
    assert [f["seq"] for f in client.events] == list(range(cursor + 1, top + 1))
    assert client.live.cursor == top


# --- property 2: user_message idempotency ------------------------------------------------------

SENDS = st.lists(st.one_of(st.sampled_from(["a", "b", "c", "d"]), st.just("reconnect")), max_size=40)


async def _user_message(s: ClientSession, log: MemoryEventLog, cmd: session.SendUserMessage) -> dict[str, typing.Any]:
    """What the agent does with the command (idempotent on the client id), and the ack."""
    try:
        [event] = await log.append([NewEvent("user_message", {"text": cmd.text}, client_id=cmd.client_id)])
    except DuplicateClientId as dup:
        return s.ack(cmd.client_id, dup.seq, True)
    return s.ack(cmd.client_id, event.seq, False)


async def _idempotency(sends: list[str]) -> None:
    log = MemoryEventLog(clock=lambda: 0.0)
    await log.open()
    received: list[int] = []
    acks: dict[str, list[dict[str, typing.Any]]] = {}

    async def connect_op(cursor: int) -> ClientSession:
        s = ClientSession("operator")
        assert s.receive(hello(cursor)) == [session.Hello(cursor)]
        s.welcome(await log.head(), "default/bot")
        for event in await log.read(after=s.cursor):
            if (frame := s.event(event)) is not None:
                received.append(frame["seq"])
        return s

    s = await connect_op(0)
    for send in sends:
        if send == "reconnect":
            s = await connect_op(received[-1] if received else 0)
            continue
        [cmd] = s.receive(frames.encode_frame({"type": "user_message", "id": send, "text": f"hi {send}"}))
        assert isinstance(cmd, session.SendUserMessage)
        ack = await _user_message(s, log, cmd)
        frames.SERVER_FRAME.validate_python(ack)
        acks.setdefault(send, []).append(ack)
        for event in await log.read(after=s.cursor):  # the live stream
            if (frame := s.event(event)) is not None:
                received.append(frame["seq"])

    events = await log.read()
    assert [e.client_id for e in events] == list(acks), "each id committed once, in first-send order"
    assert received == [e.seq for e in events]
    by_id = {e.client_id: e.seq for e in events}
    for client_id, its_acks in acks.items():
        assert [a["seq"] for a in its_acks] == [by_id[client_id]] * len(its_acks)
        assert [a["duplicate"] for a in its_acks] == [False] + [True] * (len(its_acks) - 1)
    await log.close()


@SETTINGS
@given(SENDS)
def test_resent_user_message_is_applied_once(sends: list[str]) -> None:
    asyncio.run(_idempotency(sends))
