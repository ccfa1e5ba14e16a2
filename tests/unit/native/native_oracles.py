"""Offline tiktoken oracles for the native tests.

tiktoken downloads its vocab on first use, which cannot happen here. The same `.tiktoken` files
ship (gzipped) with the bpe-openai crate; a copy lives in `vocab/`. We check each file's SHA-256
against the `expected_hash` in tiktoken's own `tiktoken_ext.openai_public`, and build the
`tiktoken.Encoding` from tiktoken's own pattern and special tokens.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from pathlib import Path
from typing import Any
from unittest import mock

import tiktoken
from tiktoken_ext import openai_public

VOCAB = Path(__file__).parent / "vocab"
ENCODINGS = ("o200k_base", "cl100k_base")


def load_encoding(name: str) -> tiktoken.Encoding:
    raw = gzip.decompress((VOCAB / f"{name}.tiktoken.gz").read_bytes())

    def local_loader(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        assert url.endswith(f"/{name}.tiktoken"), url
        assert expected_hash is not None
        actual = hashlib.sha256(raw).hexdigest()
        assert actual == expected_hash, f"{name}: sha256 {actual} != tiktoken's {expected_hash}"
        ranks: dict[bytes, int] = {}
        for line in raw.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        return ranks

    with mock.patch.object(openai_public, "load_tiktoken_bpe", local_loader):
        spec: dict[str, Any] = getattr(openai_public, name)()
    return tiktoken.Encoding(**spec)


_cache: dict[str, tiktoken.Encoding] = {}


def oracle(name: str) -> tiktoken.Encoding:
    if name not in _cache:
        _cache[name] = load_encoding(name)
    return _cache[name]
