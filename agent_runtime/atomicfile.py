"""Writing a small file atomically: the one way the runtime replaces manifest.yaml and tokens.json.

A temporary file in the same folder (created 0600 by `mkstemp`, so a secret is never readable in
between), written, then renamed over the target. A failed write — a full disk (ENOSPC) or anything
else — leaves the old file whole and no temporary file behind. Blocking: callers run it where
blocking file IO belongs (at start-up, or off the event loop).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_text_atomic"]


def write_text_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` with `text` (UTF-8), file mode `mode`, all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if mode != 0o600:
                os.fchmod(f.fileno(), mode)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
