"""`edit_file` with optimistic concurrency on real files: the edit names the version it read; a
file changed since is merged three-way, or the conflicts come back as a tool error and nothing
is written. Results carry a unified diff, never the whole file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent_runtime.messages import ToolCall, ToolResult
from agent_runtime.tools import ToolContext, ToolRegistry
from agent_runtime.tools.edit import EditFileTool
from agent_runtime.tools.files import ReadFileTool, WriteFileTool
from agent_runtime.tools.versions import VersionStore, file_version

BASE = "".join(f"line {i}\n" for i in range(1, 21))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    (d / "f.txt").write_text(BASE)
    return d


@pytest.fixture
def reg() -> ToolRegistry:
    store = VersionStore()
    return ToolRegistry([ReadFileTool(store), WriteFileTool(), EditFileTool(store)])


async def call(reg: ToolRegistry, ws: Path, name: str, **args: object) -> ToolResult:
    return await reg.execute(ToolCall("c", name, dict(args)), ToolContext(ws))


async def read_version(reg: ToolRegistry, ws: Path, path: str = "f.txt", **args: object) -> str:
    res = await call(reg, ws, "read_file", path=path, **args)
    return res.content.rsplit("[version: ", 1)[1].rstrip("]")


async def test_edit_of_an_unchanged_file_returns_a_diff_and_the_new_version(reg: ToolRegistry, ws: Path) -> None:
    v = await read_version(reg, ws, limit=3)  # a partial read still names the whole file's version
    assert v == file_version(BASE.encode())
    res = await call(reg, ws, "edit_file", path="f.txt", version=v, old_text="line 5\n", new_text="LINE FIVE\n")
    assert not res.is_error, res.content
    new = BASE.replace("line 5\n", "LINE FIVE\n")
    assert (ws / "f.txt").read_text() == new
    assert res.content.startswith(f"edited f.txt (version {file_version(new.encode())})\n--- a/f.txt\n+++ b/f.txt\n")
    assert "-line 5\n+LINE FIVE\n" in res.content and "line 15" not in res.content  # a diff, not the file


async def test_a_concurrent_change_elsewhere_is_merged(reg: ToolRegistry, ws: Path) -> None:
    v = await read_version(reg, ws)
    (ws / "f.txt").write_text(BASE.replace("line 18\n", "line 18 (by a human)\n"))  # someone else edits
    res = await call(reg, ws, "edit_file", path="f.txt", version=v, old_text="line 2\n", new_text="line two\n")
    assert not res.is_error, res.content
    assert "merged with the changes made since" in res.content
    text = (ws / "f.txt").read_text()
    assert "line two\n" in text and "line 18 (by a human)\n" in text
    assert "+line two" in res.content and "line 18 (by a human)" not in res.content  # only our change is new


async def test_a_conflicting_change_returns_the_regions_and_writes_nothing(reg: ToolRegistry, ws: Path) -> None:
    v = await read_version(reg, ws)
    theirs = BASE.replace("line 7\n", "line 7 (another agent)\n")
    (ws / "f.txt").write_text(theirs)
    res = await call(reg, ws, "edit_file", path="f.txt", version=v, old_text="line 7\n", new_text="line seven\n")
    assert res.is_error and res.content.startswith("error[edit_conflict]: f.txt changed since version")
    assert "<<<<<<< your edit\nline seven\n=======\nline 7 (another agent)\n>>>>>>> current file" in res.content
    assert "lines 7-7 of the current file" in res.content
    assert (ws / "f.txt").read_text() == theirs


async def test_edit_errors(reg: ToolRegistry, ws: Path) -> None:
    v = await read_version(reg, ws)
    res = await call(reg, ws, "edit_file", path="f.txt", version=v, old_text="nope", new_text="x")
    assert res.content.startswith("error[edit_not_found]")
    res = await call(reg, ws, "edit_file", path="f.txt", version=v, old_text="line", new_text="x")
    assert res.content.startswith("error[edit_ambiguous]: old_text occurs 20 times")
    res = await call(reg, ws, "edit_file", path="f.txt", version="v-0000000000000000", old_text="line 1\n", new_text="x")
    assert res.content.startswith("error[stale_version]")
    res = await call(reg, ws, "edit_file", path="../f.txt", version=v, old_text="a", new_text="b")
    assert res.content.startswith("error[path_escape]")
    os.symlink("/etc", ws / "etc")
    res = await call(reg, ws, "edit_file", path="etc/hostname", version=v, old_text="a", new_text="b")
    assert res.content.startswith("error[path_escape]")
    res = await call(reg, ws, "edit_file", path="missing.txt", version=v, old_text="a", new_text="b")
    assert res.content.startswith("error[not_found]")
    assert (ws / "f.txt").read_text() == BASE


async def test_replace_all_and_chained_edits(reg: ToolRegistry, ws: Path) -> None:
    v = await read_version(reg, ws)
    res = await call(reg, ws, "edit_file", path="f.txt", version=v, old_text="line", new_text="row", replace_all=True)
    assert not res.is_error
    v2 = res.content.split("(version ")[1].split(")")[0]
    res = await call(reg, ws, "edit_file", path="f.txt", version=v2, old_text="row 1\n", new_text="first\n")
    assert not res.is_error and (ws / "f.txt").read_text().startswith("first\nrow 2\n")


async def test_a_version_read_by_one_agent_never_merges_into_another_agents_file(reg: ToolRegistry, tmp_path: Path) -> None:
    # One store serves every agent of the process: a version is only a base in the workspace
    # that read it, else another agent could merge against (and probe) content it never saw.
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    (theirs / "f.txt").write_text(BASE)
    their_version = await read_version(reg, theirs)
    (mine / "f.txt").write_text(BASE.replace("line 18\n", "line 18 (mine)\n"))
    res = await call(reg, mine, "edit_file", path="f.txt", version=their_version, old_text="line 2\n", new_text="line two\n")
    assert res.is_error and res.content.startswith("error[stale_version]"), res.content
    assert (mine / "f.txt").read_text() == BASE.replace("line 18\n", "line 18 (mine)\n")
    # the version still works where it was read
    (theirs / "f.txt").write_text(BASE.replace("line 18\n", "line 18 (human)\n"))
    res = await call(reg, theirs, "edit_file", path="f.txt", version=their_version, old_text="line 2\n", new_text="line two\n")
    assert not res.is_error and "merged with the changes made since" in res.content
