"""Prompt-caching semantics of the three providers, as the mock servers apply them (sans-IO).

A prompt is a list of blocks in the provider's prefix order (Anthropic: tools → system → messages;
OpenAI and Gemini: tools, system/instructions, then messages). Each block has a canonical JSON text
(cache markers removed: moving a breakpoint does not change the prefix) and a token count; prefix i is
identified by a chained hash of blocks 0..i. Time is passed in (monotonic seconds).

- Anthropic (`anthropic_usage`): explicit `cache_control` breakpoints (at most 4, else a 400) or the
  top-level automatic marker on the last block. A read walks back from each breakpoint at most 20
  blocks looking for a stored prefix; writes happen only at breakpoints past the hit, and only for
  prefixes of at least `min_tokens`. TTL per breakpoint (5m default, 1h), refreshed on a hit.
  `input_tokens` are the tokens after the read and written prefixes.
- OpenAI (`openai_usage`): automatic; prefixes of at least 1024 tokens are cached, a hit is reported
  in 128-token steps (`cached_tokens`), `prompt_cache_key` is part of the prefix identity; idle TTL.
- Gemini (`gemini_usage`): implicit; prefixes of at least a configurable minimum are cached, the hit
  is reported as `cachedContentTokenCount` (a subset of `promptTokenCount`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import orjson

from agent_runtime.native import TokenCache

LOOKBACK_BLOCKS = 20
MAX_BREAKPOINTS = 4
TTL_S = {"5m": 300.0, "1h": 3600.0}


class CacheRequestError(ValueError):
    """The request's cache markers are invalid (the provider answers 400)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    text: str  # canonical JSON without cache markers
    breakpoint_ttl: str | None = None  # "5m" / "1h" when the block carries cache_control


@dataclasses.dataclass(frozen=True, slots=True)
class CacheUsage:
    total_tokens: int
    read_tokens: int
    write_tokens: int
    write_1h_tokens: int = 0

    @property
    def uncached_tokens(self) -> int:
        return self.total_tokens - self.read_tokens


def block_of(value: object, ttl: str | None = None) -> Block:
    return Block(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode(), ttl)


class PromptCache:
    """One provider's cache: prefix hash → expiry time."""

    def __init__(self, *, min_tokens: int, tokens: TokenCache | None = None) -> None:
        self.min_tokens = min_tokens
        self.tokens = tokens or TokenCache()
        self.entries: dict[bytes, tuple[float, float]] = {}  # hash -> (expires_at, ttl)

    def _prefixes(self, blocks: Sequence[Block], salt: str) -> tuple[list[bytes], list[int]]:
        counts = self.tokens.count_many([b.text for b in blocks])
        hashes: list[bytes] = []
        cum: list[int] = []
        h = hashlib.blake2b(salt.encode(), digest_size=16).digest()
        total = 0
        for block, n in zip(blocks, counts, strict=True):
            h = hashlib.blake2b(h + block.text.encode(), digest_size=16).digest()
            total += n
            hashes.append(h)
            cum.append(total)
        return hashes, cum

    def _alive(self, h: bytes, now: float) -> bool:
        entry = self.entries.get(h)
        if entry is None:
            return False
        if entry[0] <= now:
            del self.entries[h]
            return False
        self.entries[h] = (now + entry[1], entry[1])  # a hit refreshes the entry
        return True

    def _store(self, h: bytes, now: float, ttl: float) -> None:
        old = self.entries.get(h)
        self.entries[h] = (max(now + ttl, old[0] if old else 0.0), max(ttl, old[1] if old else 0.0))

    def anthropic_usage(self, blocks: Sequence[Block], now: float, automatic: str | None = None) -> CacheUsage:
        """`automatic` is the TTL of a top-level `cache_control` (the last block becomes a breakpoint)."""
        marks = [i for i, b in enumerate(blocks) if b.breakpoint_ttl is not None]
        ttls = {i: blocks[i].breakpoint_ttl or "5m" for i in marks}
        if automatic is not None and blocks:
            last = len(blocks) - 1
            if last in ttls and ttls[last] != automatic:
                raise CacheRequestError("automatic cache_control conflicts with the last block's TTL")
            if len(marks) >= MAX_BREAKPOINTS and last not in ttls:
                raise CacheRequestError("automatic caching needs a free breakpoint slot (4 explicit ones given)")
            ttls[last] = automatic
            marks = sorted(set(marks) | {last})
        if len(marks) > MAX_BREAKPOINTS:
            raise CacheRequestError(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(marks)}.")
        hashes, cum = self._prefixes(blocks, "anthropic")
        total = cum[-1] if cum else 0
        hit = -1
        for b in reversed(marks):
            for j in range(b, max(-1, b - LOOKBACK_BLOCKS), -1):
                if j <= hit:
                    break
                if self._alive(hashes[j], now):
                    hit = j
                    break
        read = cum[hit] if hit >= 0 else 0
        writes = [b for b in marks if b > hit and cum[b] >= self.min_tokens]
        for b in writes:
            self._store(hashes[b], now, TTL_S.get(ttls[b], 300.0))
        if not writes:
            return CacheUsage(total, read, 0)
        last = writes[-1]
        one_hour = [b for b in writes if ttls[b] == "1h"]
        written_1h = (cum[one_hour[-1]] - read) if one_hour else 0
        return CacheUsage(total, read, cum[last] - read, written_1h)

    def automatic_usage(self, blocks: Sequence[Block], now: float, key: str, *, step: int, ttl_s: float) -> CacheUsage:
        """OpenAI (step 128) and Gemini (step 1): the longest stored prefix, every long prefix stored."""
        hashes, cum = self._prefixes(blocks, key)
        total = cum[-1] if cum else 0
        matched = 0
        for j in range(len(hashes) - 1, -1, -1):
            if cum[j] < self.min_tokens:
                break
            if self._alive(hashes[j], now):
                matched = cum[j]
                break
        for j, h in enumerate(hashes):
            if cum[j] >= self.min_tokens:
                self._store(h, now, ttl_s)
        read = (matched // step) * step if matched >= self.min_tokens else 0
        return CacheUsage(total, read, 0)

    def openai_usage(self, blocks: Sequence[Block], now: float, key: str) -> CacheUsage:
        return self.automatic_usage(blocks, now, "openai|" + key, step=128, ttl_s=600.0)

    def gemini_usage(self, blocks: Sequence[Block], now: float) -> CacheUsage:
        return self.automatic_usage(blocks, now, "gemini", step=1, ttl_s=600.0)
