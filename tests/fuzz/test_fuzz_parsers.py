"""A short, bounded atheris run of fuzz_parsers.py over a copy of the kept corpus (CI smoke)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_bounded_fuzz_run(tmp_path: Path) -> None:
    work = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus", work)
    result = subprocess.run(
        [sys.executable, str(HERE / "fuzz_parsers.py"), str(work), "-max_total_time=5", "-seed=1",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done" in result.stderr
