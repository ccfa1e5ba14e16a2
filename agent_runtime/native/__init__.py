"""Typed façade over the compiled Rust core (`agent_runtime._native`).

Everything the runtime needs from the native core is imported from here, never from `_native`
directly, so the binding can change shape without touching callers. The work runs in Rust with
the GIL released; `agent_runtime.native.reference` holds slow pure-Python equivalents that the
tests hold these to. See docs/native.md.

Token counting
    `count_tokens(text, encoding="o200k_base")`, `count_tokens_many(texts, encoding)`: exact,
    equal to `len(tiktoken.get_encoding(encoding).encode_ordinary(text))` for "o200k_base" and
    "cl100k_base"; any other encoding name raises `ValueError` naming the allowed ones.
    `IncrementalCounter(encoding)`: `.append(piece) -> new total`, `.total`; always equal to a
    full recount, cost proportional to the appended text.
    `estimate_tokens(text, provider, factor=None)`: "anthropic" / "gemini" estimate, o200k count
    times `estimate_factor(provider)`.
    `TokenCache(encoding)`: counts keyed by content hash.

Diff and merge
    `diff(a, b) -> Diff` (`.hunks`, `.unified(context=3)`), `apply_diff(diff_or_unified, a)`
    (`PatchError` if it does not apply), `merge3(base, ours, theirs) -> MergeResult`
    (`.merged` is None when there are conflicts, `.text` carries git-style markers,
    `.conflicts` the regions).

Stream parsing (sans-IO)
    `SseParser(max_buffer=1 MiB)`: `.feed(bytes) -> list[SseEvent]`, `.finish()`;
    `SseBufferOverflow` when more incomplete input than `max_buffer` is buffered.
    `PartialJsonParser(max_event_depth=1)`: `.feed(str) -> list[JsonEvent]`, `.snapshot()`
    (equal to jiter's `partial_mode="trailing-strings"` on the same prefix), `.finish()`;
    `JsonParseError` (with `.offset`) on malformed input. After an error or `finish()`, further
    input raises `ParserClosedError` (SSE) or the same `JsonParseError` (JSON).

History analysis
    `analyze_history(outputs, paths=None, threshold=0.8, cache=None) -> HistoryReport`.
"""

from agent_runtime._native import (
    MAX_JSON_DEPTH,
    ConflictRegion,
    Diff,
    HistoryReport,
    Hunk,
    IncrementalCounter,
    JsonEvent,
    JsonParseError,
    MergeResult,
    ParserClosedError,
    PartialJsonParser,
    PatchError,
    SseBufferOverflow,
    SseEvent,
    SseParser,
    TokenCache,
    analyze_history,
    apply_diff,
    count_tokens,
    count_tokens_many,
    diff,
    estimate_factor,
    estimate_tokens,
    merge3,
)

ENCODINGS: tuple[str, ...] = ("o200k_base", "cl100k_base")
"""Encodings counted exactly."""

PROVIDERS: tuple[str, ...] = ("anthropic", "gemini")
"""Providers for `estimate_tokens`."""

__all__ = [
    "ENCODINGS",
    "MAX_JSON_DEPTH",
    "PROVIDERS",
    "ConflictRegion",
    "Diff",
    "HistoryReport",
    "Hunk",
    "IncrementalCounter",
    "JsonEvent",
    "JsonParseError",
    "MergeResult",
    "ParserClosedError",
    "PartialJsonParser",
    "PatchError",
    "SseBufferOverflow",
    "SseEvent",
    "SseParser",
    "TokenCache",
    "analyze_history",
    "apply_diff",
    "count_tokens",
    "count_tokens_many",
    "diff",
    "estimate_factor",
    "estimate_tokens",
    "merge3",
]
