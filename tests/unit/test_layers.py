"""The contracts of .importlinter hold: layers, sans-IO cores, the CLI, the mock providers apart (a broken import fails the suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    contracts = (ROOT / ".importlinter").read_text().count("[importlinter:contract:")
    assert contracts >= 8  # layers, sans-io, kube, cli, runtime-without-mocks, mocks-apart, mock-layers, tools
    assert f"Contracts: {contracts} kept, 0 broken." in proc.stdout
