"""The checked-in CRDs are exactly what the pydantic models generate, and say what the models check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from agent_operator import crdgen


def test_checked_in_crds_match_the_models() -> None:
    rendered = crdgen.render()
    for folder in (crdgen.CRD_DIR, crdgen.CHART_CRD_DIR):
        assert sorted(rendered) == sorted(p.name for p in folder.glob("*.yaml")), folder
        for name, text in rendered.items():
            on_disk = (folder / name).read_text(encoding="utf-8")
            assert on_disk == text, f"{folder / name} is stale: run `python -m agent_operator.crdgen`"


def test_check_flag_reports_drift(tmp_path: Path) -> None:
    (tmp_path / "agents.agentruntime.dev.yaml").write_text("stale\n")
    proc = subprocess.run([sys.executable, "-m", "agent_operator.crdgen", "--check", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "agents.agentruntime.dev.yaml" in proc.stderr


def _schema(kind_file: str) -> dict[str, Any]:
    doc = yaml.safe_load(crdgen.render()[kind_file])
    return doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_agent_schema_is_structural_and_carries_the_validators() -> None:
    text = crdgen.render()["agents.agentruntime.dev.yaml"]
    assert "$ref" not in text and "$defs" not in text and "anyOf" not in text and "title:" not in text
    spec = _schema("agents.agentruntime.dev.yaml")["properties"]["spec"]
    tools = spec["properties"]["tools"]
    assert tools["x-kubernetes-list-type"] == "set"
    assert tools["items"]["enum"] == ["shell", "read_file", "write_file", "list_dir", "edit_file"]
    assert spec["properties"]["limits"]["properties"]["toolTimeoutS"]["exclusiveMinimum"] is True
    assert spec["properties"]["onDelete"]["enum"] == ["archive", "remove"]
    assert any("runtimePool" in r["rule"] for r in spec["x-kubernetes-validations"])
    status = _schema("agents.agentruntime.dev.yaml")["properties"]["status"]
    assert "default" not in str(status)
    assert status["properties"]["phase"]["enum"] == ["Pending", "Placed", "Running", "Idle", "WaitingApproval",
                                                     "Failed"]


def test_printer_columns_show_phase_shard_turns_and_cache() -> None:
    doc = yaml.safe_load(crdgen.render()["agents.agentruntime.dev.yaml"])
    columns = {c["name"]: c["jsonPath"] for c in doc["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase" and columns["Shard"] == ".status.shard"
    assert columns["Turns"] == ".status.turns" and columns["Cache"] == ".status.cachedShare"


def test_every_node_of_every_schema_has_a_type() -> None:
    def walk(node: dict[str, Any], path: str) -> None:
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        for k, v in (node.get("properties") or {}).items():
            walk(v, f"{path}.{k}")
        if "items" in node:
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    for name in crdgen.render():
        walk(_schema(name), name)


def _defaults(node: Any, path: str = "") -> list[str]:
    """Paths of every `default` keyword under `node`."""
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _defaults(v, f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    found = [path] if "default" in node else []
    return found + [p for k, v in node.items() if k != "default" for p in _defaults(v, f"{path}.{k}")]


def test_agent_objects_store_no_defaults_and_the_descriptions_say_them() -> None:
    """An Agent stores only what its author wrote (spec itself defaults to {}): every status write
    re-encodes the whole object, so stored defaults would be paid on every write. The runtime
    applies the defaults (AgentSpec); the schema's descriptions say each one."""
    from agent_runtime.manifest import AgentSpec

    spec = _schema("agents.agentruntime.dev.yaml")["properties"]["spec"]
    assert _defaults(spec) == [""] and spec["default"] == {}
    limits = spec["properties"]["limits"]["properties"]
    assert limits["maxTurns"]["description"].endswith(f"Default: {AgentSpec().limits.max_turns}")
    assert spec["properties"]["onDelete"]["description"].endswith('Default: "archive"')
    assert spec["properties"]["tools"]["description"] == (
        "Default: [" + ", ".join(f'"{t}"' for t in AgentSpec().tools) + "]")
    # the RuntimePool (a handful of objects) keeps its schema defaults
    assert _defaults(_schema("runtimepools.agentruntime.dev.yaml")["properties"]["spec"])
