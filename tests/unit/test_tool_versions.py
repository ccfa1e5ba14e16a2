"""The file-version store (`agent_runtime.tools.versions`): versions, the byte-bounded LRU, workspace
isolation, and consistency when the tool-IO threads use it at once."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_runtime.tools.versions import VERSION_MAX, VERSIONS, VersionStore, file_version

A, B = Path("/ws/a"), Path("/ws/b")


def test_a_version_is_the_first_64_bits_of_the_sha256() -> None:
    assert file_version(b"hello\n") == "v-" + hashlib.sha256(b"hello\n").hexdigest()[:16]
    assert file_version(b"") != file_version(b"\n")
    assert VERSION_MAX == 4 * 1024 * 1024
    assert isinstance(VERSIONS, VersionStore) and VERSIONS.max_bytes == 64 * 1024 * 1024


def test_a_version_is_known_only_in_its_workspace() -> None:
    store = VersionStore()
    store.put(A, "v-1", "text")
    assert store.get(A, "v-1") == "text"
    assert store.get(B, "v-1") is None
    assert store.get(A, "v-2") is None


def test_least_recently_used_contents_go_first_when_over_the_byte_bound() -> None:
    store = VersionStore(max_bytes=10)
    store.put(A, "v-1", "aaaa")
    store.put(A, "v-2", "bbbb")
    assert store.get(A, "v-1") == "aaaa"  # v-1 is now the most recently used
    store.put(A, "v-3", "cccc")  # 12 bytes > 10: the least recently used (v-2) goes
    assert store.get(A, "v-2") is None
    assert store.get(A, "v-1") == "aaaa" and store.get(A, "v-3") == "cccc"
    store.put(A, "v-1", "aaaa")  # known already: only refreshed, not counted twice
    store.put(B, "v-4", "dd")
    assert store.get(A, "v-1") == "aaaa" and store.get(B, "v-4") == "dd" and store.get(A, "v-3") == "cccc"


def test_a_content_larger_than_the_bound_is_not_kept() -> None:
    store = VersionStore(max_bytes=4)
    store.put(A, "v-1", "abcd")
    store.put(A, "v-2", "abcde")
    assert store.get(A, "v-2") is None and store.get(A, "v-1") == "abcd"


@pytest.fixture
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def test_the_store_stays_consistent_when_threads_use_it_at_once(fast_switching: None) -> None:
    """read_file and edit_file use the store from the host's tool-IO threads: concurrent puts of the
    same version, and gets of an entry another thread evicts, must neither raise nor let the byte
    count drift from what is stored."""
    store = VersionStore(max_bytes=64)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(2000):
                key = f"v-{(i * 7 + seed) % 23}"
                store.put(A, key, "x" * (1 + (i + seed) % 9))
                store.get(A, f"v-{(i * 5 + seed) % 23}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stored = sum(len(v) for v in store._items.values())
    assert store._bytes == stored <= store.max_bytes
