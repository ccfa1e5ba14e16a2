"""A full disk (ENOSPC) in the middle of a manifest apply leaves no temporary file behind: the
manifest on disk is the old one, whole, and the next apply after space returns succeeds.

Realistic first: as root, the server's data folder is a small tmpfs mounted for the test (and
unmounted after), filled to the last byte. Elsewhere the same check runs with ENOSPC raised by the
write itself (monkeypatched at the file the host opens).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from agent_runtime import atomicfile
from agent_runtime.manifest import make_manifest

if TYPE_CHECKING:
    from conftest import ServerFactory


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only; skips the test where mounting is refused)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the monkeypatched test covers this case)")
    where.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        where.rmdir()


def fill(folder: Path) -> Path:
    """Write a file in `folder` until the file system is full; return it (remove it to free space)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


BIG_PROMPT = "x" * 20_000  # needs pages the full disk no longer has


async def test_apply_on_a_full_tmpfs_leaves_no_temp_file(start_server: ServerFactory, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt") as mnt:
        server = await start_server(data_dir=mnt / "data")
        doc = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "a"}}
        status, body = await server.request("POST", "/v1/agents", json=doc, headers={"Content-Type": "application/json"})
        assert status == 201, body
        folder = mnt / "data/agents/default/a"
        before = (folder / "manifest.yaml").read_text()

        filler = fill(mnt)
        doc["spec"] = {"systemPrompt": BIG_PROMPT}
        status, body = await server.request("POST", "/v1/agents", json=doc)
        assert status >= 500, body  # the write failed: not applied
        assert leftovers(folder) == [], leftovers(folder)
        assert (folder / "manifest.yaml").read_text() == before  # the old manifest, whole

        filler.unlink()  # space returns: the same apply succeeds and still leaves nothing behind
        status, body = await server.request("POST", "/v1/agents", json=doc)
        assert status == 200, body
        assert leftovers(folder) == []
        assert yaml.safe_load((folder / "manifest.yaml").read_text())["spec"]["systemPrompt"] == BIG_PROMPT
        await server.stop()


class _FullFile:
    """A text file whose writes fail as on a full disk (the bytes never reach it)."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


async def test_apply_failing_with_enospc_leaves_no_temp_file(start_server: ServerFactory,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server = await start_server()
    await server.host.apply(make_manifest("a"))
    folder = server.host.get("default/a").folder
    before = (folder / "manifest.yaml").read_text()
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomicfile.os, "fdopen", lambda *a, **k: _FullFile(real_fdopen(*a, **k)))
    with pytest.raises(OSError) as caught:
        await server.host.apply(make_manifest("a", systemPrompt=BIG_PROMPT))
    assert caught.value.errno == errno.ENOSPC
    assert leftovers(folder) == [] and (folder / "manifest.yaml").read_text() == before
    monkeypatch.undo()
    await server.host.apply(make_manifest("a", systemPrompt=BIG_PROMPT))
    assert leftovers(folder) == []


def test_a_token_write_failing_with_enospc_leaves_the_old_file_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_runtime.auth import Grant, Role, read_grants, write_grants

    path = tmp_path / "tokens.json"
    write_grants(path, {"d1": Grant(Role("admin"), None, None)})
    before = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomicfile.os, "fdopen", lambda *a, **k: _FullFile(real_fdopen(*a, **k)))
    with pytest.raises(OSError) as caught:
        write_grants(path, {"d1": Grant(Role("admin"), None, None), "d2": Grant(Role("viewer"), "ns", None)})
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json"] and path.read_bytes() == before
    monkeypatch.undo()
    write_grants(path, {"d2": Grant(Role("viewer"), "ns", None)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json"] and set(read_grants(path)) == {"d2"}
    assert path.stat().st_mode & 0o777 == 0o600
