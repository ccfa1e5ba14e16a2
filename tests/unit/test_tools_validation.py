"""Fast checks of the tool layer that need no subprocess: schema validation of every built-in,
unknown tools, workspace confinement, spec ordering, bounded output buffers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime.messages import ToolCall, ToolResult
from agent_runtime.tools import (
    PathEscape,
    Tool,
    ToolArgumentsInvalid,
    ToolContext,
    ToolError,
    ToolOutput,
    ToolRegistry,
    ToolSpec,
    UnknownTool,
    default_registry,
    resolve_in_workspace,
)
from agent_runtime.tools.output import HeadTail, cap_text

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("error")]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


async def _call(ws: Path, name: str, args: object) -> ToolResult:
    return await default_registry().execute(ToolCall("c1", name, args), ToolContext(ws))  # type: ignore[arg-type]


# --- schema validation: (tool, arguments, text the error must contain) -----------------------

INVALID = [
    ("shell", {}, "missing required field 'command'"),
    ("shell", {"command": 5}, "field 'command' must be of type string (got integer)"),
    ("shell", {"command": "ls", "cwd": "/"}, "unexpected field 'cwd'"),
    ("shell", {"command": "ls", "timeout_s": "10"}, "field 'timeout_s' must be of type number (got string)"),
    ("shell", {"command": "ls", "timeout_s": 0}, "field 'timeout_s'"),
    ("shell", {"command": "ls", "timeout_s": True}, "field 'timeout_s' must be of type number (got boolean)"),
    ("read_file", {}, "missing required field 'path'"),
    ("read_file", {"path": ["a"]}, "field 'path' must be of type string (got array)"),
    ("read_file", {"path": "a", "offset": "3"}, "field 'offset' must be of type integer (got string)"),
    ("read_file", {"path": "a", "limit": 0}, "field 'limit'"),
    ("read_file", {"path": "a", "encoding": "latin-1"}, "unexpected field 'encoding'"),
    ("write_file", {"path": "a"}, "missing required field 'content'"),
    ("write_file", {"content": "x"}, "missing required field 'path'"),
    ("write_file", {"path": "a", "content": None}, "field 'content' must be of type string (got null)"),
    ("write_file", {"path": "a", "content": "x", "mode": "a"}, "unexpected field 'mode'"),
    ("list_dir", {"path": 3}, "field 'path' must be of type string (got integer)"),
    ("list_dir", {"path": ".", "recursive": True}, "unexpected field 'recursive'"),
    ("list_dir", "not an object", "the arguments must be an object (got string)"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "args", "expected"), INVALID)
async def test_invalid_arguments_become_error_results(ws: Path, name: str, args: object, expected: str) -> None:
    result = await _call(ws, name, args)
    assert result.is_error
    assert result.tool_call_id == "c1" and result.name == name
    assert result.content.startswith(f"error[invalid_arguments]: invalid arguments for tool '{name}'")
    assert expected in result.content
    assert list(ws.iterdir()) == []  # nothing ran


@pytest.mark.asyncio
async def test_all_problems_are_reported_together(ws: Path) -> None:
    result = await _call(ws, "write_file", {"path": 1, "extra": 2})
    assert "missing required field 'content'" in result.content
    assert "field 'path' must be of type string" in result.content
    assert "unexpected field 'extra'" in result.content


def test_builtin_schemas_forbid_additional_properties() -> None:
    for spec in default_registry().specs():
        assert spec.input_schema["type"] == "object"
        assert spec.input_schema["additionalProperties"] is False


@pytest.mark.asyncio
async def test_unknown_tool_names_the_available_ones(ws: Path) -> None:
    result = await _call(ws, "rm_rf", {"path": "."})
    assert result.is_error
    assert result.content == (
        "error[unknown_tool]: no tool named 'rm_rf'; available tools: shell, read_file, write_file, list_dir, edit_file"
    )
    assert result.duration_ms >= 0


# --- registry behaviour ------------------------------------------------------------------------


class _Echo(Tool):
    spec = ToolSpec("echo", "Echo.", {"type": "object", "properties": {"x": {"type": "string"}},
                                      "required": ["x"], "additionalProperties": False}, read_only=True)

    async def run(self, args: dict, ctx: ToolContext) -> ToolOutput:
        return ToolOutput(args["x"])


class _Buggy(Tool):
    spec = ToolSpec("buggy", "Raises.", {"type": "object", "additionalProperties": False})

    async def run(self, args: dict, ctx: ToolContext) -> ToolOutput:
        raise KeyError("oops")


class _Failing(Tool):
    spec = ToolSpec("failing", "ToolError.", {"type": "object", "additionalProperties": False})

    async def run(self, args: dict, ctx: ToolContext) -> ToolOutput:
        raise ToolError("the thing is broken", code="broken")


def test_specs_follow_the_requested_order() -> None:
    reg = default_registry()
    assert [s.name for s in reg.specs()] == ["shell", "read_file", "write_file", "list_dir", "edit_file"]
    assert [s.name for s in reg.specs(["list_dir", "shell"])] == ["list_dir", "shell"]
    assert [s.name for s in reg.specs(("write_file", "read_file", "write_file"))] == ["write_file", "read_file"]
    assert reg.specs([]) == []
    with pytest.raises(UnknownTool, match="'nope'"):
        reg.specs(["shell", "nope"])
    spec = reg.get("read_file").spec
    assert spec.read_only and spec.idempotent
    assert reg.get("shell").spec.read_only is False
    assert reg.get("write_file").spec.idempotent is True
    assert spec.to_dict()["annotations"] == {"readOnlyHint": True, "idempotentHint": True}


def test_register_rejects_duplicates_and_bad_schemas() -> None:
    reg = ToolRegistry([_Echo()])
    with pytest.raises(ValueError, match="already registered"):
        reg.register(_Echo())
    reg.register(_Echo(), replace=True)

    class Bad(_Echo):
        spec = ToolSpec("bad", "x", {"type": "objekt"})

    with pytest.raises(Exception, match="objekt"):
        reg.register(Bad())
    assert "bad" not in reg and "echo" in reg and len(reg) == 1


@pytest.mark.asyncio
async def test_execute_never_raises_for_failing_tools(ws: Path) -> None:
    reg = ToolRegistry([_Echo(), _Buggy(), _Failing()])
    ctx = ToolContext(ws)
    ok = await reg.execute(ToolCall("1", "echo", {"x": "hi"}), ctx)
    assert (ok.content, ok.is_error) == ("hi", False)
    bug = await reg.execute(ToolCall("2", "buggy", {}), ctx)
    assert bug.is_error and "KeyError" in bug.content and bug.content.startswith("error[internal]")
    fail = await reg.execute(ToolCall("3", "failing", {}), ctx)
    assert (fail.content, fail.is_error) == ("error[broken]: the thing is broken", True)


def test_error_tree_codes() -> None:
    assert issubclass(PathEscape, ToolError) and PathEscape("x").code == "path_escape"
    assert ToolArgumentsInvalid("x").code == "invalid_arguments"
    assert UnknownTool("x").code == "unknown_tool"
    assert ToolError("x").code == "tool_error" and ToolError("x", code="c").code == "c"


def test_context_limits_are_checked(ws: Path) -> None:
    with pytest.raises(ValueError):
        ToolContext(ws, timeout_s=0)
    with pytest.raises(ValueError):
        ToolContext(ws, output_cap=10)


# --- workspace confinement ------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "f.txt").write_text("x")
    (tmp_path / "outside").mkdir()
    (ws / "link_out").symlink_to(tmp_path / "outside")
    (ws / "file_link_out").symlink_to("/etc/passwd")
    (ws / "link_in").symlink_to(ws / "sub")
    (ws / "sub" / "up").symlink_to("..")  # stays inside
    (ws / "sub" / "up2").symlink_to("../..")  # leaves
    return ws


ESCAPES = [
    "..",
    "../",
    "../ws2/x",
    "/etc/passwd",
    "/",
    "a/../../x",
    "sub/../../ws/../x",
    "link_out",
    "link_out/new.txt",
    "file_link_out",
    "sub/up2/x",
    "link_in/../../x",
    "~/../x",
]

INSIDE = [
    (".", "."),
    ("", "."),
    ("sub/f.txt", "sub/f.txt"),
    ("a/../sub", "sub"),
    ("./sub/./f.txt", "sub/f.txt"),
    ("new/dir/file.txt", "new/dir/file.txt"),
    ("link_in/f.txt", "sub/f.txt"),
    ("sub/up/sub", "sub"),
    ("~/sub", "sub"),
    ("~", "."),
]


@pytest.mark.parametrize("user_path", ESCAPES)
def test_escapes_are_refused(tree: Path, user_path: str) -> None:
    with pytest.raises(PathEscape) as info:
        resolve_in_workspace(tree, user_path)
    assert repr(user_path) in str(info.value)
    assert "outside the workspace" in str(info.value)


def test_symlink_escape_is_named_as_such(tree: Path) -> None:
    with pytest.raises(PathEscape, match="symlink"):
        resolve_in_workspace(tree, "link_out/x")


@pytest.mark.parametrize(("user_path", "expected"), INSIDE)
def test_paths_inside_are_resolved(tree: Path, user_path: str, expected: str) -> None:
    resolved = resolve_in_workspace(tree, user_path)
    assert resolved == (tree.resolve() / expected).resolve()


def test_absolute_path_inside_is_allowed(tree: Path) -> None:
    assert resolve_in_workspace(tree, str(tree / "sub" / "f.txt")) == tree.resolve() / "sub" / "f.txt"


def test_workspace_reached_through_a_symlink(tmp_path: Path, tree: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tree)
    assert resolve_in_workspace(alias, "sub/f.txt") == tree.resolve() / "sub" / "f.txt"
    with pytest.raises(PathEscape):
        resolve_in_workspace(alias, "../outside")


def test_nul_byte_is_an_argument_error(tree: Path) -> None:
    with pytest.raises(ToolArgumentsInvalid):
        resolve_in_workspace(tree, "a\x00b")


@pytest.fixture(scope="module")
def prop_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prop")
    ws = root / "ws"
    (ws / "sub").mkdir(parents=True)
    (root / "outside").mkdir()
    (ws / "link_out").symlink_to(root / "outside")
    (ws / "link_in").symlink_to(ws / "sub")
    (ws / "sub" / "up").symlink_to("..")
    (ws / "sub" / "up2").symlink_to("../..")
    return ws


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "sub", "link_out", "link_in", "up", "up2", "x", ""]), max_size=6),
       st.booleans())
def test_resolution_never_leaves_the_workspace(prop_tree: Path, parts: list[str], absolute: bool) -> None:
    user_path = "/".join(parts)
    if absolute:
        user_path = str(prop_tree) + "/" + user_path
    expected = Path(os.path.realpath(prop_tree / user_path))
    try:
        resolved = resolve_in_workspace(prop_tree, user_path)
    except PathEscape:
        assert not expected.is_relative_to(prop_tree.resolve())
    else:
        assert resolved == expected
        assert resolved.is_relative_to(prop_tree.resolve())


# --- bounded output ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=2, max_value=600))
def test_head_tail_keeps_prefix_and_suffix(chunks: list[bytes], cap: int) -> None:
    buf = HeadTail(cap)
    for c in chunks:
        buf.feed(c)
    data = b"".join(chunks)
    assert buf.total == len(data)
    if len(data) <= cap:
        assert buf.elided == 0
        assert buf.render() == data.decode("utf-8", errors="replace")
    else:
        assert buf.elided == len(data) - cap
        assert f"bytes elided ...]" in buf.render()


def test_head_tail_cuts_on_character_boundaries() -> None:
    text = "é" * 1000  # 2000 bytes
    capped = cap_text(text, 101)
    head, _, tail = capped.partition("\n[... ")
    assert set(head) == {"é"} and "\ufffd" not in capped
    assert set(tail.split("...]\n")[1]) == {"é"}
    assert cap_text("short", 100) == "short"
