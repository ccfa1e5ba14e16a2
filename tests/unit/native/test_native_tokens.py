"""Token counting: exact against tiktoken (offline oracle), batch, incremental, estimates."""

from __future__ import annotations

import math
import threading

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from native_corpus import mixed_corpus

from agent_runtime import native
from agent_runtime.native import reference

ENCODINGS = native.ENCODINGS

# Text built to stress the pre-tokenizer: whitespace runs, CJK, emoji (with modifiers and ZWJ),
# code, contractions, numbers, and text that looks like special tokens.
_ATOMS = [
    " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "   \n", "\u00a0", "\u3000",
    "a", "Hello", "WORLD", "camelCase", "snake_case", "'s", "'LL", "don't", "We've",
    "日本語", "中文", "한국어", "é", "e\u0301", "Ω", "ß",
    "👍", "🏽", "👨\u200d👩\u200d👧", "🎉", "\u200d",
    "0", "123", "4567", "3.14", "-1e10",
    "def f(x):", "{", "}", "=>", "//", "/*", "*/", "    return x", "\"str\"", "`", "$", "#",
    "<|endoftext|>", "<|im_start|>", "<|fim_prefix|>", "<|", "|>",
]
atoms_text = st.lists(st.sampled_from(_ATOMS), max_size=40).map("".join)
_CHARS = sorted({c for a in _ATOMS for c in a})
mixed = st.one_of(atoms_text, st.text(max_size=200), st.text(alphabet=st.sampled_from(_CHARS), max_size=60))


def _oracle(name: str, o200k: tiktoken.Encoding, cl100k: tiktoken.Encoding) -> tiktoken.Encoding:
    return o200k if name == "o200k_base" else cl100k


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_corpus_counts_equal_tiktoken(encoding: str, o200k: tiktoken.Encoding, cl100k: tiktoken.Encoding) -> None:
    enc = _oracle(encoding, o200k, cl100k)
    corpus = mixed_corpus(300_000)
    assert native.count_tokens(corpus, encoding) == len(enc.encode_ordinary(corpus))
    chunks = [corpus[i : i + 997] for i in range(0, len(corpus), 997)]
    assert native.count_tokens_many(chunks, encoding) == [len(t) for t in enc.encode_ordinary_batch(chunks)]


def test_known_counts_and_default_encoding() -> None:
    assert native.count_tokens("Hello, world!") == 4
    assert native.count_tokens("") == 0
    assert native.count_tokens_many([]) == []


@settings(max_examples=300, deadline=None)
@given(text=mixed)
def test_generated_text_counts_equal_tiktoken(text: str, o200k: tiktoken.Encoding, cl100k: tiktoken.Encoding) -> None:
    assert native.count_tokens(text, "o200k_base") == len(o200k.encode_ordinary(text))
    assert native.count_tokens(text, "cl100k_base") == len(cl100k.encode_ordinary(text))


@settings(max_examples=int(__import__("os").environ.get("NATIVE_FUZZ_EXAMPLES", 150)), deadline=None)
@given(pieces=st.lists(st.one_of(atoms_text.map(lambda s: s[:12]), st.text(alphabet=st.sampled_from(_CHARS), max_size=8), st.text(max_size=6)), max_size=30), encoding=st.sampled_from(ENCODINGS))
def test_incremental_equals_full_recount_after_every_append(
    pieces: list[str], encoding: str, o200k: tiktoken.Encoding, cl100k: tiktoken.Encoding
) -> None:
    enc = _oracle(encoding, o200k, cl100k)
    counter = native.IncrementalCounter(encoding)
    got = [counter.append(p) for p in pieces]
    assert got == reference.incremental_totals(pieces, lambda t: len(enc.encode_ordinary(t)))
    assert counter.total == (got[-1] if got else 0)
    assert counter.text == "".join(pieces)


def test_incremental_on_corpus_in_small_appends(o200k: tiktoken.Encoding) -> None:
    text = mixed_corpus(20_000)
    counter = native.IncrementalCounter("o200k_base")
    for i in range(0, len(text), 37):
        total = counter.append(text[i : i + 37])
        if i % (37 * 50) == 0:
            assert total == len(o200k.encode_ordinary(text[: i + 37]))
    assert counter.total == len(o200k.encode_ordinary(text))


def test_unknown_encoding_is_a_value_error_naming_the_allowed_ones() -> None:
    for call in (
        lambda: native.count_tokens("x", "gpt2"),
        lambda: native.count_tokens_many(["x"], "p50k_base"),
        lambda: native.IncrementalCounter("r50k_base"),
        lambda: native.TokenCache("nope"),
    ):
        with pytest.raises(ValueError, match="o200k_base.*cl100k_base"):
            call()


def test_wrong_argument_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        native.count_tokens(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        native.count_tokens_many("not a list of str")


def test_estimates_use_the_documented_factor() -> None:
    text = mixed_corpus(10_000)
    exact = native.count_tokens(text)
    assert native.estimate_factor("anthropic") == 1.25
    assert native.estimate_factor("gemini") == 1.07
    for provider in native.PROVIDERS:
        assert native.estimate_tokens(text, provider) == math.ceil(exact * native.estimate_factor(provider))
    assert native.estimate_tokens(text, "anthropic", factor=1.5) == math.ceil(exact * 1.5)
    with pytest.raises(ValueError, match="anthropic.*gemini"):
        native.estimate_tokens(text, "openai")
    with pytest.raises(ValueError, match="positive"):
        native.estimate_tokens(text, "gemini", factor=0.0)


def test_token_cache_never_retokenizes_known_content() -> None:
    cache = native.TokenCache("cl100k_base")
    texts = [mixed_corpus(n) for n in (100, 2000, 100)]
    assert cache.count_many(texts) == native.count_tokens_many(texts, "cl100k_base")
    assert (cache.misses, cache.hits, len(cache)) == (2, 1, 2)
    assert cache.count(texts[1]) == native.count_tokens(texts[1], "cl100k_base")
    assert (cache.misses, cache.hits) == (2, 2)


def test_gil_is_released_while_counting() -> None:
    """While one thread counts a large text, another thread keeps running Python code."""
    text = mixed_corpus(1 << 20) * 4
    ticks = 0
    done = threading.Event()

    def work() -> None:
        native.count_tokens(text)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks += 1
    t.join()
    # With the GIL held for the whole call (~0.1 s) the loop would only run between switch
    # intervals (a handful of iterations); released, it spins freely.
    assert ticks > 10_000


def test_lone_surrogates_are_rejected() -> None:
    """Python str may hold lone surrogates, which are not UTF-8 (tiktoken repairs them with
    'surrogatepass' and counts the result; we refuse)."""
    with pytest.raises(UnicodeEncodeError):
        native.count_tokens("a\ud800b")
    with pytest.raises(UnicodeEncodeError):
        native.IncrementalCounter().append("\udc00")
