"""atheris (libFuzzer) target for the native SSE and partial-JSON parsers.

The first input byte picks the parser, the second seeds how the rest is cut into chunks.
Checked on every input: no crash (a Rust panic would surface as pyo3's PanicException);
SSE: any chunking gives the events of `reference.parse_sse`; partial JSON: every snapshot equals
jiter's trailing-strings parse of the same prefix, errors are `JsonParseError` with an offset
inside the input, and a complete document equals `json.loads`.

Run: `.venv/bin/python tests/fuzz/fuzz_parsers.py tests/fuzz/corpus -max_total_time=60`
(tests/fuzz/test_fuzz_parsers.py runs it for a few seconds on a copy of the corpus).
"""

from __future__ import annotations

import json
import random
import sys

import atheris

with atheris.instrument_imports():
    import jiter

    from agent_runtime import native
    from agent_runtime.native import reference


def chunks(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 16)
        out.append(data[i : i + n])
        i += n
    return out


def check_sse(data: bytes, seed: int) -> None:
    expected = [(e.event, e.data, e.id, e.retry) for e in reference.parse_sse(data)]
    parser = native.SseParser(max_buffer=1 << 16)
    got = []
    try:
        for c in chunks(data, seed):
            got += [(e.event, e.data, e.id, e.retry) for e in parser.feed(c)]
    except native.SseBufferOverflow:
        return
    parser.finish()
    assert got == expected, (got, expected)


def jiter_partial(prefix: str) -> object:
    try:
        return jiter.from_json(prefix.encode(), partial_mode="trailing-strings")
    except ValueError:
        return None


def check_json(data: bytes, seed: int) -> None:
    text = data.decode("utf-8", errors="replace")
    parser = native.PartialJsonParser()
    fed = ""
    for c in chunks(text.encode(), seed):
        piece = c.decode("utf-8", errors="ignore")
        try:
            parser.feed(piece)
        except native.JsonParseError as e:
            assert 0 <= e.offset <= len((fed + piece).encode()), e.offset
            return
        fed += piece
        assert parser.snapshot() == jiter_partial(fed), fed
    try:
        parser.finish()
    except native.JsonParseError:
        return
    assert parser.snapshot() == json.loads(fed)


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, seed, body = data[0], data[1], data[2:]
    if mode % 2 == 0:
        check_sse(body, seed)
    else:
        check_json(body, seed)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
