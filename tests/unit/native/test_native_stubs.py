"""The hand-written stub agent_runtime/_native.pyi matches the compiled module."""

import subprocess
import sys


def test_stub_matches_compiled_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "agent_runtime._native"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
