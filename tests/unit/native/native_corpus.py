"""Deterministic test inputs for the native-core tests and bench/native.py (no downloads)."""

from __future__ import annotations

import random
from pathlib import Path

import json

_STDLIB = Path(json.__file__).parent.parent
_SOURCES = ["difflib.py", "json/decoder.py", "json/encoder.py", "argparse.py", "textwrap.py", "string.py"]

_PROSE = (
    "The quick brown fox jumps over the lazy dog. It's a well-known pangram; we'll use it, "
    "they've seen it, I'm sure you'd agree.\n\n"
    "## Heading\n\n- item one\n- item two   \n\t\tindented\r\n"
    "日本語のテキストも少し含めます。中文文本也包括在内。한국어 텍스트.\n"
    "Emoji: 👍🏽 🎉 👨‍👩‍👧 ✅ — “quotes” and ‘single’ … ellipsis.\n"
    "Numbers: 1234567 3.14159 -42 1e10 0xDEADBEEF 2026-11-25T09:13:09Z\n"
    "Special-looking: <|endoftext|> <|im_start|>user<|im_end|> <|fim_prefix|>\n"
    "    \n\n\n    trailing spaces    \n"
)


def mixed_corpus(size: int) -> str:
    """About `size` characters alternating stdlib source code and multilingual prose."""
    code = "".join((_STDLIB / s).read_text() for s in _SOURCES)
    rng = random.Random(1234)
    parts: list[str] = []
    total = 0
    pos = 0
    while total < size:
        if rng.random() < 0.5:
            n = rng.randint(2000, 8000)
            chunk = code[pos : pos + n]
            pos = (pos + n) % max(1, len(code) - 8000)
        else:
            chunk = _PROSE * rng.randint(1, 6)
        parts.append(chunk)
        total += len(chunk)
    return "".join(parts)[:size]


def python_file(lines: int, seed: int) -> str:
    """A plausible Python file of `lines` lines."""
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        kind = rng.random()
        if kind < 0.1:
            out.append(f"def function_{i}(arg_{i % 7}, value={rng.randint(0, 99)}):\n")
        elif kind < 0.2:
            out.append("\n")
        elif kind < 0.3:
            out.append(f"    # comment {rng.randint(0, 10**6)} about line {i}\n")
        else:
            out.append(f"    result_{i % 13} = compute(arg_{i % 7}, {rng.randint(0, 10**4)}) + {i}\n")
    return "".join(out)


def edit_lines(text: str, fraction: float, seed: int) -> str:
    """Change, delete or insert about `fraction` of the lines of `text`."""
    rng = random.Random(seed)
    lines = text.splitlines(True)
    out = []
    for line in lines:
        r = rng.random()
        if r < fraction / 3:
            out.append(line.replace("compute", "calculate"))
        elif r < 2 * fraction / 3:
            continue
        elif r < fraction:
            out.append(line)
            out.append(f"    inserted_{rng.randint(0, 10**6)} = True\n")
        else:
            out.append(line)
    return "".join(out)


def move_block(text: str, size: int, seed: int) -> str:
    """Move a block of `size` lines elsewhere (as in the research note's diff inputs)."""
    rng = random.Random(seed)
    lines = text.splitlines(True)
    start = rng.randrange(0, len(lines) - size)
    block = lines[start : start + size]
    del lines[start : start + size]
    dest = rng.randrange(0, len(lines))
    lines[dest:dest] = block
    return "".join(lines)


def tool_arguments(size: int, seed: int = 7) -> str:
    """A write_file-style tool call: escaped file content plus many small edit objects."""
    rng = random.Random(seed)
    content = python_file(size // 60, seed)[: size * 6 // 10]
    edits: list[dict[str, object]] = []
    while len(json.dumps(edits)) < size * 4 // 10:
        edits.append(
            {
                "line": rng.randint(1, 5000),
                "old": f"value_{rng.randint(0, 999)}",
                "new": f"renamed_{rng.randint(0, 999)} \"quoted\" é",
                "replace_all": rng.random() < 0.5,
                "weight": round(rng.random() * 100, 3),
            }
        )
    return json.dumps({"path": "src/module.py", "content": content, "edits": edits, "dry_run": False})


def fragments(text: str, seed: int, lo: int = 8, hi: int = 20) -> list[str]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        n = rng.randint(lo, hi)
        out.append(text[i : i + n])
        i += n
    return out


def sse_stream(arguments: str, seed: int = 3) -> bytes:
    """OpenAI chat.completions-style SSE chunks carrying `arguments` in small deltas."""
    out = []
    for k, frag in enumerate(fragments(arguments, seed)):
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}}],
        }
        out.append(f"id: {k}\ndata: {json.dumps(chunk)}\n\n")
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


__all__ = ["edit_lines", "fragments", "mixed_corpus", "python_file", "sse_stream", "tool_arguments"]
