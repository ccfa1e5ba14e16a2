"""File versions: what `read_file` reports and `edit_file` expects, and the store of their contents.

A file's version is `v-` + the first 64 bits (16 hex digits) of the SHA-256 of its bytes
(`file_version`). Files of at most `VERSION_MAX` bytes get one. `read_file` remembers the content
it read under that version in a `VersionStore`, and `edit_file` applies an edit to the version the
model names (the base of a three-way merge when the file changed since), then remembers the result.

`VERSIONS` is the one store of the process, shared by every agent's `read_file` and `edit_file`:
keyed by (workspace, version), bounded by bytes for all workspaces together (LRU), in memory only
(after a restart an old version is unknown, and the edit asks the model to read again).
"""

from __future__ import annotations

import collections
import hashlib
import threading
from pathlib import Path

__all__ = ["VERSIONS", "VERSION_MAX", "VersionStore", "file_version"]

# Files up to this size get a version (read whole, hashed, remembered) and can be edited.
VERSION_MAX = 4 * 1024 * 1024


def file_version(raw: bytes) -> str:
    """The version of a file's content, as `read_file` reports it and `edit_file` expects it."""
    return "v-" + hashlib.sha256(raw).hexdigest()[:16]


class VersionStore:
    """Recently read or written file contents by workspace and version (content-addressed within
    a workspace, one byte bound for all), the bases of `edit_file`'s three-way merges. Shared by
    every agent of the process, but a version is only known in the workspace that read or wrote
    it: another agent naming it gets `stale_version`, never a merge against (or a probe of)
    content it did not see. In memory: after a restart an old version is unknown and the edit
    asks the model to read the file again. Thread-safe: the file tools use it from the host's
    tool-IO threads (without the lock, concurrent puts let the byte count drift from what is
    stored, and a get could raise on an entry another thread evicted)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, workspace: Path, version: str, text: str) -> None:
        key = (str(workspace), version)
        size = len(text)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return
            if size > self.max_bytes:
                return
            self._items[key] = text
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)

    def get(self, workspace: Path, version: str) -> str | None:
        key = (str(workspace), version)
        with self._lock:
            text = self._items.get(key)
            if text is not None:
                self._items.move_to_end(key)
            return text


VERSIONS = VersionStore()
"""The process-wide store the built-in `read_file` and `edit_file` share."""
