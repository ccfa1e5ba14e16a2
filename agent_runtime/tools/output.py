"""Bounded tool output: keep the head and a rolling tail of a byte stream, elide the middle.

A runaway command (`yes`, a verbose build, `cat` of a log) must cost neither unbounded memory nor
the model's context window. `HeadTail` is fed chunks as they are read: the first half of the cap is
kept as the head, the rest as a rolling tail, and only a byte counter grows. Rendering joins them
with a note `[... N bytes elided ...]`, trimmed to UTF-8 character boundaries at the cut.

Used by `agent_runtime.tools.process` (the shell's stdout/stderr), `agent_runtime.tools.files` and
`agent_runtime.tools.edit` (file reads, directory listings, edit results), and by
`agent_runtime.tools.registry` (a last-resort cap on any tool's content).
"""

from __future__ import annotations

__all__ = ["HeadTail", "cap_text", "elision_note", "trim_incomplete_end"]


def elision_note(n: int) -> str:
    return f"\n[... {n} bytes elided ...]\n"


def trim_incomplete_end(b: bytes) -> bytes:
    """Drop a UTF-8 sequence cut off at the end of `b` (at most 3 bytes)."""
    n = len(b)
    i = n - 1
    # Walk back over at most 3 continuation bytes to the lead byte of the last character.
    while i >= 0 and n - i <= 4 and (b[i] & 0xC0) == 0x80:
        i -= 1
    if i < 0:
        return b
    lead = b[i]
    need = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1
    return b[:i] if n - i < need else b


def _trim_incomplete_start(b: bytes) -> bytes:
    """Drop continuation bytes at the start of `b` (the tail of a character cut off in front)."""
    i = 0
    while i < len(b) and i < 3 and (b[i] & 0xC0) == 0x80:
        i += 1
    return b[i:]


class HeadTail:
    """Keeps at most `cap` bytes of a stream: the first `cap // 2` and the last `cap - cap // 2`."""

    __slots__ = ("_head", "_head_cap", "_tail", "_tail_cap", "total")

    def __init__(self, cap: int) -> None:
        if cap < 2:
            raise ValueError("cap must be >= 2")
        self._head_cap = cap // 2
        self._tail_cap = cap - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        if len(data) >= self._tail_cap:
            self._tail[:] = data[-self._tail_cap :]
        else:
            self._tail += data
            excess = len(self._tail) - self._tail_cap
            if excess > 0:
                del self._tail[:excess]  # bytearray deletes from the front in O(1) amortized

    @property
    def elided(self) -> int:
        return self.total - len(self._head) - len(self._tail)

    def render(self) -> str:
        elided = self.elided
        if elided == 0:
            return (bytes(self._head) + bytes(self._tail)).decode("utf-8", errors="replace")
        head = trim_incomplete_end(bytes(self._head))
        tail = _trim_incomplete_start(bytes(self._tail))
        elided += (len(self._head) - len(head)) + (len(self._tail) - len(tail))
        return head.decode("utf-8", errors="replace") + elision_note(elided) + tail.decode("utf-8", errors="replace")


def cap_text(text: str, cap: int) -> str:
    """`text` if it fits in `cap` UTF-8 bytes, else its head and tail with an elision note."""
    if len(text) * 4 <= cap:  # fast path: cannot exceed the cap whatever the characters
        return text
    raw = text.encode("utf-8", errors="surrogatepass")
    if len(raw) <= cap:
        return text
    buf = HeadTail(cap)
    buf.feed(raw)
    return buf.render()
