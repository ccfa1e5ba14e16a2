"""The mocks' prompt-caching rules, per provider (sans-IO, time passed in)."""

from __future__ import annotations

import pytest

from agent_runtime.native import count_tokens
from mock_providers.caching import Block, CacheRequestError, PromptCache, block_of


def text_block(i: int, words: int = 300, ttl: str | None = None) -> Block:
    return block_of({"type": "text", "text": f"block {i} " + "lorem ipsum " * words}, ttl)


def total(blocks: list[Block]) -> int:
    return sum(count_tokens(b.text) for b in blocks)


def upto(blocks: list[Block], i: int) -> int:
    return total(blocks[: i + 1])


def test_anthropic_write_then_read_at_the_breakpoint() -> None:
    cache = PromptCache(min_tokens=1024)
    blocks = [text_block(0), text_block(1, ttl="5m"), text_block(2)]
    first = cache.anthropic_usage(blocks, now=0.0)
    assert (first.read_tokens, first.write_tokens) == (0, upto(blocks, 1))
    second = cache.anthropic_usage(blocks, now=10.0)
    assert (second.read_tokens, second.write_tokens) == (upto(blocks, 1), 0)
    assert second.total_tokens == total(blocks)
    assert second.uncached_tokens == total(blocks) - upto(blocks, 1)


def test_anthropic_rolling_breakpoint_reads_the_previous_prefix() -> None:
    """The marker moved to a later block: the lookback finds the prefix the last call wrote."""
    cache = PromptCache(min_tokens=1024)
    turn1 = [text_block(0, ttl="5m"), text_block(1, ttl="5m")]
    cache.anthropic_usage(turn1, now=0.0)
    turn2 = [text_block(0, ttl="5m"), text_block(1), text_block(2), text_block(3, ttl="5m")]
    usage = cache.anthropic_usage(turn2, now=1.0)
    assert usage.read_tokens == upto(turn2, 1)
    assert usage.write_tokens == upto(turn2, 3) - upto(turn2, 1)


def test_anthropic_lookback_is_20_blocks() -> None:
    cache = PromptCache(min_tokens=100)
    small = [block_of({"type": "text", "text": f"item {i} " + "x " * 60}) for i in range(30)]
    first = [*small[:5], Block(small[5].text, "5m")]
    cache.anthropic_usage(first, now=0.0)
    near = [*small[:24], Block(small[24].text, "5m")]  # 19 blocks after the entry: found
    assert cache.anthropic_usage(near, now=1.0).read_tokens == upto(small, 5)
    cache2 = PromptCache(min_tokens=100)
    cache2.anthropic_usage(first, now=0.0)
    far = [*small[:27], Block(small[27].text, "5m")]  # 22 blocks after it: out of the window
    assert cache2.anthropic_usage(far, now=1.0).read_tokens == 0


def test_anthropic_minimum_length_and_ttl() -> None:
    cache = PromptCache(min_tokens=100_000)
    blocks = [text_block(0, ttl="5m")]
    assert cache.anthropic_usage(blocks, 0.0).write_tokens == 0
    assert cache.anthropic_usage(blocks, 1.0).read_tokens == 0
    cache = PromptCache(min_tokens=10)
    cache.anthropic_usage(blocks, 0.0)
    assert cache.anthropic_usage(blocks, 299.0).read_tokens > 0  # refreshed by this hit
    assert cache.anthropic_usage(blocks, 598.0).read_tokens > 0
    assert cache.anthropic_usage(blocks, 899.0).read_tokens == 0  # expired: written again
    one_hour = [text_block(5, ttl="1h")]
    cache.anthropic_usage(one_hour, 1000.0)
    assert cache.anthropic_usage(one_hour, 1000.0 + 3000).read_tokens > 0


def test_anthropic_breakpoint_limit_and_automatic_mode() -> None:
    cache = PromptCache(min_tokens=10)
    with pytest.raises(CacheRequestError, match="maximum of 4"):
        cache.anthropic_usage([text_block(i, 5, ttl="5m") for i in range(5)], 0.0)
    blocks = [text_block(0), text_block(1)]
    usage = cache.anthropic_usage(blocks, 0.0, automatic="5m")
    assert usage.write_tokens == total(blocks)
    with pytest.raises(CacheRequestError, match="TTL"):
        cache.anthropic_usage([text_block(0), text_block(1, ttl="1h")], 0.0, automatic="5m")
    one_h = cache.anthropic_usage([text_block(7, ttl="1h"), text_block(8, ttl="5m")], 0.0)
    assert one_h.write_1h_tokens == upto([text_block(7)], 0)


def test_openai_automatic_prefix_in_128_token_steps() -> None:
    cache = PromptCache(min_tokens=1024)
    base = [text_block(i) for i in range(4)]
    assert cache.openai_usage(base, 0.0, "agent-1").read_tokens == 0
    longer = [*base, text_block(9)]
    usage = cache.openai_usage(longer, 1.0, "agent-1")
    assert usage.read_tokens == (total(base) // 128) * 128 and usage.read_tokens >= 1024
    assert cache.openai_usage(longer, 2.0, "agent-2").read_tokens == 0  # prompt_cache_key is part of the prefix
    short = [text_block(0, 20)]
    cache.openai_usage(short, 0.0, "k")
    assert cache.openai_usage(short, 1.0, "k").read_tokens == 0  # under 1024 tokens: never cached


def test_gemini_implicit_cache_with_configurable_minimum() -> None:
    cache = PromptCache(min_tokens=2048)
    base = [text_block(i) for i in range(6)]
    cache.gemini_usage(base, 0.0)
    usage = cache.gemini_usage([*base, text_block(7)], 1.0)
    assert usage.read_tokens == total(base)
