"""Estimated cost of model calls at each provider's published price multipliers (sans-IO).

A cost here is in **input-token units**: one uncached input token of the agent's model costs 1.0.
Multipliers relative to that price, as the providers publish them (see
../shared/research/providers.md §1.5, §2.4, §3.4; checked 2026):

- Anthropic: cache write (5-minute TTL) 1.25×, cache read 0.1×, output 5× (Sonnet: $3 in, $15 out).
- OpenAI (Chat and Responses): cached input 0.1× ("up to 90%" off on GPT-5 models; no write fee
  before GPT-5.6, 1.25× from 5.6 on: writes priced at 1.25× when reported), output 8× (GPT-5:
  $1.25 in, $10 out).
- Gemini: implicit cache hits 0.25× (2.5 models; 0.1× on some newer ones), output 8×.
- simulated: priced like Anthropic so the demo's numbers read like a real bill.

Units rather than dollars: a dollar figure needs the model's base price, which changes faster than
the ratios; multiply by it when you need dollars.
"""

from __future__ import annotations

import dataclasses

from agent_runtime.messages import Usage


@dataclasses.dataclass(frozen=True, slots=True)
class Multipliers:
    """Price of each kind of token relative to one uncached input token."""

    input: float = 1.0
    cache_write: float = 1.25
    cache_read: float = 0.1
    output: float = 5.0


ANTHROPIC = Multipliers(cache_write=1.25, cache_read=0.1, output=5.0)
OPENAI = Multipliers(cache_write=1.25, cache_read=0.1, output=8.0)
GEMINI = Multipliers(cache_write=1.0, cache_read=0.25, output=8.0)

PRICES: dict[str, Multipliers] = {
    "anthropic": ANTHROPIC,
    "openai": OPENAI,
    "openai-responses": OPENAI,
    "gemini": GEMINI,
    "simulated": ANTHROPIC,
}


def multipliers(provider: str) -> Multipliers:
    """The multipliers of `provider` (an unknown name gets Anthropic's, the most common shape)."""
    return PRICES.get(provider, ANTHROPIC)


def input_cost(usage: Usage, provider: str) -> float:
    """The prompt's cost: uncached input + cache writes + cache reads at their multipliers."""
    m = multipliers(provider)
    return usage.input_tokens * m.input + usage.cache_write_tokens * m.cache_write + usage.cache_read_tokens * m.cache_read


def cost(usage: Usage, provider: str) -> float:
    """The whole call: `input_cost` plus output tokens at the output multiplier."""
    return input_cost(usage, provider) + usage.output_tokens * multipliers(provider).output


def cached_share(usage: Usage) -> float:
    """Share of the prompt's tokens served from the provider's cache (0 for an empty prompt)."""
    total = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return usage.cache_read_tokens / total if total else 0.0
