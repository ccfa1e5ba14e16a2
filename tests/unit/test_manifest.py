"""Agent manifests: valid shapes load; each bad field gets a ManifestError naming it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agent_runtime.manifest import (
    API_VERSION,
    MAX_MANIFEST_DEPTH,
    ManifestError,
    load_manifest_dir,
    load_manifests_json,
    load_manifests_text,
    parse_manifest,
)

GOOD = {"apiVersion": API_VERSION, "kind": "Agent", "metadata": {"name": "coder", "namespace": "team-a"},
        "spec": {"model": {"provider": "simulated", "name": "sim"}, "systemPrompt": "hi", "tools": ["shell"],
                 "limits": {"maxTurns": 5, "tokenBudget": 1000}}}


def test_good_manifest_round_trips_in_camel_case() -> None:
    m = parse_manifest(GOOD)
    assert m.key == "team-a/coder" and m.spec.limits.max_turns == 5 and m.spec.tools == ("shell",)
    assert parse_manifest(m.to_dict()) == m
    assert m.to_dict()["spec"]["limits"]["maxTurns"] == 5


def test_thinking_budget_is_optional_and_camel_case() -> None:
    assert parse_manifest(GOOD).spec.model.thinking_budget is None
    m = parse_manifest(with_("spec.model.thinkingBudget", 4096))
    assert m.spec.model.thinking_budget == 4096 and m.to_dict()["spec"]["model"]["thinkingBudget"] == 4096


def with_(path: str, value: object) -> dict:
    import copy

    doc = copy.deepcopy(GOOD)
    node = doc
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("metadata.name", "Bad_Name", "metadata.name"),
        ("metadata.namespace", "x" * 70, "metadata.namespace"),
        ("spec.limits.maxTurns", 0, "spec.limits.maxTurns"),
        ("spec.limits.tokenBudget", "lots", "spec.limits.tokenBudget"),
        ("spec.tools", ["shell", "rm_rf"], "spec.tools"),
        ("spec.model.provider", "acme", "spec.model.provider"),
        ("spec.model.thinkingBudget", 100, "spec.model.thinkingBudget"),
        ("spec.unknownField", 1, "spec.unknownField"),
        ("kind", "Pod", "kind"),
        ("apiVersion", "v1", "apiVersion"),
    ],
)
def test_bad_field_is_named(path: str, value: object, field: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifest(with_(path, value), source="x.yaml")
    assert err.value.field == field
    assert str(err.value).startswith(f"x.yaml: {field}: ")


def test_not_a_mapping_and_bad_yaml() -> None:
    with pytest.raises(ManifestError, match="must be a mapping"):
        parse_manifest(["a"])
    with pytest.raises(ManifestError, match="invalid YAML"):
        load_manifests_text("a: [unclosed", source="f.yaml")


def test_folder_of_multi_document_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        f"apiVersion: {API_VERSION}\nkind: Agent\nmetadata: {{name: two}}\n---\n"
        f"apiVersion: {API_VERSION}\nkind: Agent\nmetadata: {{name: three}}\n"
    )
    (tmp_path / "a.yml").write_text(f"apiVersion: {API_VERSION}\nkind: Agent\nmetadata: {{name: one}}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [m.metadata.name for m in load_manifest_dir(tmp_path)] == ["one", "two", "three"]


# -- nesting depth (issue 17, item 7): a deeply nested document is a ManifestError, never a RecursionError

def _deep_yaml(depth: int, flow: bool) -> str:
    if flow:
        return "metadata: {name: a}\nspec: " + "[" * depth + "]" * depth + "\n"
    return "metadata:\n  name: a\nspec:\n" + "".join("  " * (i + 1) + "- \n" for i in range(depth))


@pytest.mark.parametrize("flow", [True, False])
@pytest.mark.parametrize("depth", [MAX_MANIFEST_DEPTH + 1, 1000, 20_000])
def test_deeply_nested_yaml_is_a_manifest_error(depth: int, flow: bool) -> None:
    with pytest.raises(ManifestError, match=f"nested deeper than {MAX_MANIFEST_DEPTH}"):
        load_manifests_text(_deep_yaml(depth, flow))


def test_deeply_nested_mapping_yaml_is_a_manifest_error() -> None:
    text = "metadata: {name: a}\nspec: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"
    with pytest.raises(ManifestError, match="nested deeper"):
        load_manifests_text(text)


def test_nesting_up_to_the_bound_is_parsed_as_usual() -> None:
    # depth counts the document's own mapping: spec's value may nest MAX_MANIFEST_DEPTH - 1 deep
    inner = MAX_MANIFEST_DEPTH - 1
    with pytest.raises(ManifestError, match="apiVersion"):  # parsed, then refused for its fields
        load_manifests_text("metadata: {name: a}\nspec: " + "[" * inner + "]" * inner + "\n")
    with pytest.raises(ManifestError, match="apiVersion"):
        load_manifests_json(b'{"metadata": {"name": "a"}, "spec": ' + b"[" * inner + b"]" * inner + b"}")
    with pytest.raises(ManifestError, match="apiVersion"):  # a list of documents is not a level (as YAML's ---)
        load_manifests_json(b'[{"metadata": {"name": "a"}, "spec": ' + b"[" * inner + b"]" * inner + b"}]")
    with pytest.raises(ManifestError, match="nested deeper"):
        load_manifests_json(b'[{"metadata": {"name": "a"}, "spec": ' + b"[" * (inner + 1) + b"]" * (inner + 1) + b"}]")


@pytest.mark.parametrize("depth", [MAX_MANIFEST_DEPTH + 1, 1000, 1100, 20_000])
def test_deeply_nested_json_is_a_manifest_error(depth: int) -> None:
    body = b'{"metadata": {"name": "a"}, "spec": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(ManifestError, match=f"nested deeper than {MAX_MANIFEST_DEPTH}"):
        load_manifests_json(body)


def test_json_manifests_load_one_or_a_list() -> None:
    assert load_manifests_json(orjson.dumps(GOOD)) == [parse_manifest(GOOD)]
    assert load_manifests_json(orjson.dumps([GOOD, GOOD])) == [parse_manifest(GOOD)] * 2
    with pytest.raises(orjson.JSONDecodeError):
        load_manifests_json(b"{nope")
