"""Fan-out of one agent's committed events and live text to its attached clients.

The hub never waits for a client: `publish_*` calls each subscriber's non-blocking `offer_*`,
and a subscriber whose bounded queue is full is dropped on the spot (it reconnects and catches
up by cursor). So a slow client can never slow the agent or the other clients.

The hub also remembers the text of the assistant message in progress, so a client that attaches
mid-message first receives the text so far.
"""

from __future__ import annotations

from typing import Protocol

from agent_runtime.events import Event


class Subscriber(Protocol):
    def offer_event(self, event: Event) -> bool:
        """Queue the event without waiting; False if the subscriber is full (it gets dropped)."""

    def offer_delta(self, message_id: str, text: str, offset: int) -> bool:
        """Queue a live text delta without waiting; False if full."""

    def overflowed(self) -> None:
        """Called once when the hub drops this subscriber for being too slow."""


class LiveText:
    """The assistant message being streamed right now (not durable)."""

    __slots__ = ("message_id", "parts", "length")

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.parts: list[str] = []
        self.length = 0

    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


class Hub:
    """Subscribers of one agent."""

    __slots__ = ("subscribers", "live", "dropped")

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.live: LiveText | None = None
        self.dropped = 0

    def subscribe(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _drop(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self.dropped += 1
        sub.overflowed()

    def publish_event(self, event: Event) -> None:
        for sub in tuple(self.subscribers):
            if not sub.offer_event(event):
                self._drop(sub)

    def start_live(self, message_id: str) -> None:
        self.live = LiveText(message_id)

    def end_live(self) -> str:
        """Forget the message in progress; returns its text so far."""
        live, self.live = self.live, None
        return live.text() if live else ""

    def publish_delta(self, text: str) -> None:
        live = self.live
        if live is None or not text:
            return
        offset = live.length
        live.parts.append(text)
        live.length += len(text)
        for sub in tuple(self.subscribers):
            if not sub.offer_delta(live.message_id, text, offset):
                self._drop(sub)

    def live_so_far(self) -> tuple[str, str] | None:
        """`(message_id, text so far)` of the message in progress, for a client attaching now."""
        if self.live is None or not self.live.length:
            return None
        return self.live.message_id, self.live.text()
