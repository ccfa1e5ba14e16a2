"""Processes of this machine, for tests that check nothing a tool started survives."""

from __future__ import annotations

import os


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found
