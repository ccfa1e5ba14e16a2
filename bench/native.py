"""Benchmark of the Rust core against the Python baselines, measured interleaved in one run.

Prints one JSON document: {"bench": "native", "results": [...], "checks": [...]}. Inputs are
generated deterministically (tests/unit/native/native_corpus.py); tiktoken runs offline from the
vocab copy in tests/unit/native/vocab/. Ratios are medians of interleaved A/B repetitions, since
this machine is shared and noisy. Usage: `.venv/bin/python bench/native.py`.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "unit" / "native"))

import jiter  # noqa: E402
import merge3  # noqa: E402
from native_corpus import (  # noqa: E402
    edit_lines,
    fragments,
    mixed_corpus,
    move_block,
    python_file,
    sse_stream,
    tool_arguments,
)
from native_oracles import oracle  # noqa: E402

from agent_runtime import native  # noqa: E402


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ab(baseline: Callable[[], Any], ours: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median seconds of baseline and ours, alternating A and B."""
    a, b = [], []
    for _ in range(reps):
        a.append(timed(baseline))
        b.append(timed(ours))
    return statistics.median(a), statistics.median(b)


def median_of(fn: Callable[[], Any], reps: int) -> float:
    return statistics.median(timed(fn) for _ in range(reps))


results: list[dict[str, Any]] = []
checks: list[dict[str, Any]] = []


def row(name: str, baseline: str, base_s: float, ours_s: float, **extra: Any) -> float:
    ratio = base_s / ours_s
    results.append(
        {"name": name, "baseline": baseline, "baseline_ms": round(base_s * 1e3, 3), "native_ms": round(ours_s * 1e3, 3),
         "ratio": round(ratio, 1), **extra}
    )
    return ratio


def check(name: str, value: float, target: float, higher_is_better: bool = True) -> None:
    met = value >= target if higher_is_better else value <= target
    checks.append({"name": name, "value": round(value, 3), "target": target, "met": met})


def bench_tokens() -> None:
    text = mixed_corpus(1 << 20)
    for enc_name, target in (("o200k_base", 1.5), ("cl100k_base", 2.0)):
        enc = oracle(enc_name)
        assert native.count_tokens(text, enc_name) == len(enc.encode_ordinary(text))
        native.count_tokens(text, enc_name)
        base_s, ours_s = ab(lambda: len(enc.encode_ordinary(text)), lambda: native.count_tokens(text, enc_name), 9)
        ratio = row(f"count_1MiB_{enc_name}", "tiktoken encode_ordinary", base_s, ours_s,
                    native_mb_per_s=round(len(text.encode()) / ours_s / 1e6, 1))
        check(f"{enc_name[:-5]}_vs_tiktoken", ratio, target)


def bench_incremental() -> None:
    text = mixed_corpus(100_000)
    pieces = [text[i : i + 100] for i in range(0, len(text), 100)]
    enc = oracle("o200k_base")

    def recount() -> None:
        acc = ""
        for p in pieces:
            acc += p
            len(enc.encode_ordinary(acc))

    def incremental() -> None:
        c = native.IncrementalCounter("o200k_base")
        for p in pieces:
            c.append(p)

    base_s, ours_s = ab(recount, incremental, 3)
    ratio = row("incremental_100KB_1000_appends", "tiktoken full recount per append", base_s, ours_s)
    check("incremental_vs_recount", ratio, 300)


def bench_diff_merge() -> None:
    # As in the research note: about 2% of the lines touched plus a moved 40-line block.
    a = python_file(5000, seed=11)
    b = move_block(edit_lines(a, 0.02, seed=12), 40, seed=13)
    al, bl = a.splitlines(True), b.splitlines(True)
    base_s, ours_s = ab(lambda: "".join(difflib.unified_diff(al, bl)), lambda: native.diff(a, b).unified(), 9)
    assert native.apply_diff(native.diff(a, b).unified(), a) == b
    ratio = row("diff_5000_lines_unified", "difflib.unified_diff", base_s, ours_s, hunks=len(native.diff(a, b)))
    check("diff_vs_difflib", ratio, 20)
    results[-1]["native_le_1ms"] = ours_s <= 1e-3

    heavy = edit_lines(a, 0.3, seed=14)
    for k in range(20):
        heavy = move_block(heavy, 40, seed=100 + k)
    hl = heavy.splitlines(True)
    base_s, ours_s = ab(lambda: "".join(difflib.unified_diff(al, hl)), lambda: native.diff(a, heavy).unified(), 5)
    row("diff_5000_lines_heavy_unified", "difflib.unified_diff", base_s, ours_s, hunks=len(native.diff(a, heavy)))
    results[-1]["native_le_1ms"] = ours_s <= 1e-3

    base = python_file(5000, seed=21)
    ours = edit_lines(base, 0.02, seed=22)
    theirs = edit_lines(base, 0.02, seed=23)
    bl3, ol3, tl3 = base.splitlines(True), ours.splitlines(True), theirs.splitlines(True)
    m = native.merge3(base, ours, theirs)
    base_s, ours_s = ab(
        lambda: "".join(merge3.Merge3(bl3, ol3, tl3).merge_lines()),
        lambda: native.merge3(base, ours, theirs).text,
        7,
    )
    ratio = row("merge3_5000_lines", "merge3.Merge3.merge_lines", base_s, ours_s, conflicts=len(m.conflicts))
    check("merge_vs_merge3", ratio, 20)
    results[-1]["native_le_1ms"] = ours_s <= 1e-3


def bench_partial_json() -> None:
    args = tool_arguments(100_000)
    frags = fragments(args, seed=5)

    def incremental() -> None:
        p = native.PartialJsonParser()
        for f in frags:
            p.feed(f)

    def reparse() -> None:
        acc = ""
        for f in frags:
            acc += f
            jiter.from_json(acc.encode(), partial_mode="trailing-strings")

    ours_s = median_of(incremental, 15)
    base_s = median_of(reparse, 3)
    row("partial_json_100KB_fragments", "jiter partial re-parse per fragment", base_s, ours_s,
        fragments=len(frags), bytes=len(args.encode()))
    check("partial_json_total_ms", ours_s * 1e3, 2.0, higher_is_better=False)


def bench_sse() -> None:
    stream = sse_stream(tool_arguments(100_000), seed=9)
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
    n_events = len(native.SseParser().feed(stream))

    def parse() -> None:
        p = native.SseParser()
        for c in chunks:
            p.feed(c)

    def python_split() -> None:  # the plain-Python floor: split on blank lines, no field parsing
        buf = b""
        out = []
        for c in chunks:
            buf += c
            *done, buf = buf.split(b"\n\n")
            out += [d.decode().partition("data: ")[2] for d in done]

    base_s, ours_s = ab(python_split, parse, 9)
    row("sse_events", "python split on blank lines", base_s, ours_s, events=n_events,
        native_events_per_s=round(n_events / ours_s))
    check("sse_events_per_s", n_events / ours_s, 1_000_000)


def bench_gil() -> None:
    text = mixed_corpus(1 << 20)
    native.count_tokens(text)

    def sequential() -> None:
        native.count_tokens(text)
        native.count_tokens(text)

    # Two long-lived, warmed-up threads, as a server's pool would be: a fresh thread first builds
    # its own regex cache (per-thread by design), which is start-up cost, not GIL contention.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    for fut in [pool.submit(native.count_tokens, text) for _ in range(4)]:
        fut.result()

    def two_threads() -> None:
        a, b = pool.submit(native.count_tokens, text), pool.submit(native.count_tokens, text)
        a.result()
        b.result()

    seq_s, par_s = ab(sequential, two_threads, 15)
    pool.shutdown()
    speedup = row("gil_two_threads", "two counts one after the other", seq_s, par_s)
    check("gil_two_threads_speedup", speedup, 1.6)


def main() -> None:
    t0 = time.perf_counter()
    bench_tokens()
    bench_incremental()
    bench_diff_merge()
    bench_partial_json()
    bench_sse()
    bench_gil()
    doc = {"bench": "native", "seconds": round(time.perf_counter() - t0, 1), "results": results, "checks": checks}
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
