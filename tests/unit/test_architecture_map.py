"""docs/architecture.md is the map of the code: every box in its diagrams is a module that exists,
every name on a turn's path is a class (and method) that exists, and no module is over 400 lines
without saying why at its top. Reads files only (no imports of the code under test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = (ROOT / "agent_runtime", ROOT / "operator" / "agent_operator", ROOT / "mock_providers")
MAX_LINES = 400
REASON = re.compile(r"over 400 lines", re.IGNORECASE)


def _section(title: str, until: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}")
    return text[start:text.index(f"## {until}", start)]


def _blocks(section: str) -> list[str]:
    return re.findall(r"```\n(.*?)```", section, re.S)


def _module_path(dotted: str) -> Path | None:
    """The file or package of a dotted module name under the repository root, if it exists."""
    base = ROOT / "operator" if dotted.startswith("agent_operator") else ROOT
    parts = dotted.split(".")
    as_file = base.joinpath(*parts).with_suffix(".py")
    as_package = base.joinpath(*parts) / "__init__.py"
    for candidate in (as_file, as_package):
        if candidate.exists():
            return candidate
    return None


def boxes(block: str) -> list[str]:
    """The module names of a layer diagram: each line's first column (before a run of two spaces),
    split on `|`. A bare name after a dotted one on the same line shares its package
    (`kube.client | fence` is kube.client and kube.fence)."""
    names: list[str] = []
    for line in block.splitlines():
        if not line.strip() or line.startswith((" ", "(")):
            continue  # a continuation of the line above (its description)
        column = re.split(r"\s{2,}", line.strip())[0]
        package = ""
        for raw in column.split("|"):
            name = raw.strip().rstrip("/")
            if not name:
                continue
            if "." in name:
                package = name.rsplit(".", 1)[0]
            elif package:
                name = f"{package}.{name}"
            names.append(name if name.startswith(("agent_operator", "mock_providers")) else f"agent_runtime.{name}")
    return names


def test_every_box_of_the_layer_diagrams_is_a_module() -> None:
    names = [n for block in _blocks(_section("Layers", "One turn")) for n in boxes(block)]
    assert len(names) >= 40, names  # the runtime, Kubernetes mode and the operator are all drawn
    missing = [n for n in names if _module_path(n) is None]
    assert not missing, f"boxes in docs/architecture.md that are no module: {missing}"


def _sources() -> str:
    return "\n".join(p.read_text() for pkg in PACKAGES for p in sorted(pkg.rglob("*.py")))


def test_every_name_on_a_turns_path_exists() -> None:
    (diagram,) = _blocks(_section("One turn", "Lifecycle"))
    sources = _sources()
    named = re.findall(r"\b([A-Z][A-Za-z]+)((?:\.[a-z_]+)?)", diagram)
    assert len(named) >= 10, named
    for cls, method in named:
        if cls in {"CallModel", "RunTools", "FinishTurn"}:  # the TurnMachine's effects
            assert re.search(rf"^class {cls}\b", sources, re.M), cls
            continue
        assert re.search(rf"^class {cls}\b", sources, re.M), f"{cls} is on a turn's path in the doc but is no class"
        if method:
            assert re.search(rf"def {method[1:]}\b", sources), f"{cls}{method} is drawn but not defined"


def test_the_map_checker_sees_a_missing_module() -> None:
    assert boxes("kube.client | fence | nosuch  desc\n  (more)\n") == [
        "agent_runtime.kube.client", "agent_runtime.kube.fence", "agent_runtime.kube.nosuch"]
    assert _module_path("agent_runtime.kube.nosuch") is None
    assert _module_path("agent_runtime.kube.fence") is not None
    assert _module_path("agent_operator.planner") is not None


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_module_over_400_lines_without_a_reason_at_its_top(package: Path) -> None:
    long_and_silent = []
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text().splitlines()
        head = "\n".join(lines[:40])
        if len(lines) > MAX_LINES and not REASON.search(head):
            long_and_silent.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert not long_and_silent, "split these or say at the top why not: " + ", ".join(long_and_silent)
