"""The autonomy policy: deny → ask → allow whatever the rule order, globs on names and
arguments, path normalisation, the read-only matcher, the default, and manifest validation."""

from __future__ import annotations

from typing import Any

import pytest

from agent_runtime.agent.autonomy import AutonomyPolicy
from agent_runtime.manifest import Autonomy, ManifestError, make_manifest


def policy(*rules: dict[str, Any], default: str = "ask") -> AutonomyPolicy:
    return AutonomyPolicy(Autonomy.model_validate({"rules": list(rules), "defaultAction": default}))


ISSUE_EXAMPLE = policy(
    {"action": "allow", "tool": "write_file", "arguments": {"path": "src/*"}},
    {"action": "deny", "tool": "shell", "arguments": {"command": "rm *"}},
)


@pytest.mark.parametrize(
    ("name", "args", "action", "rule"),
    [
        ("shell", {"command": "rm -rf /"}, "deny", 1),
        ("shell", {"command": "rm"}, "ask", None),  # "rm *" needs the space
        ("shell", {"command": "ls"}, "ask", None),
        ("write_file", {"path": "src/a.py", "content": ""}, "allow", 0),
        ("write_file", {"path": "src/deep/er/a.py", "content": ""}, "allow", 0),  # * crosses /
        ("write_file", {"path": "./src/a.py", "content": ""}, "allow", 0),
        ("write_file", {"path": "src/../setup.py", "content": ""}, "ask", None),  # normalised first
        ("write_file", {"path": "docs/a.md", "content": ""}, "ask", None),
        ("write_file", {"content": ""}, "ask", None),  # a missing argument never matches
        ("read_file", {"path": "src/a.py"}, "ask", None),
    ],
)
def test_the_issue_example(name: str, args: dict[str, Any], action: str, rule: int | None) -> None:
    verdict = ISSUE_EXAMPLE.decide(name, args)
    assert (verdict.action, verdict.rule) == (action, rule)


def test_deny_wins_over_an_earlier_allow_and_ask_over_allow() -> None:
    p = policy(
        {"action": "allow", "tool": "*"},
        {"action": "ask", "tool": "shell"},
        {"action": "deny", "tool": "shell", "arguments": {"command": "*sudo*"}},
    )
    assert p.decide("shell", {"command": "sudo reboot"}).action == "deny"
    assert p.decide("shell", {"command": "ls"}).action == "ask"
    assert p.decide("read_file", {"path": "x"}).action == "allow"
    verdict = p.decide("shell", {"command": "sudo reboot"})
    assert verdict.reason == "deny by rule 2 (deny: tool 'shell', command '*sudo*')"


def test_read_only_matcher_and_non_string_arguments() -> None:
    p = policy({"action": "allow", "readOnly": True}, {"action": "deny", "tool": "shell", "arguments": {"timeout_s": "9*"}})
    assert p.decide("list_dir", {}, read_only=True).action == "allow"
    assert p.decide("write_file", {"path": "a"}, read_only=False).action == "ask"
    assert p.decide("shell", {"command": "x", "timeout_s": 90}).action == "deny"  # JSON text "90"
    assert p.decide("shell", {"command": "x", "timeout_s": 5}).action == "ask"


def test_default_action_and_an_empty_policy_allows() -> None:
    assert policy(default="deny").decide("shell", {}).reason == "deny by the default action (no rule matched)"
    assert AutonomyPolicy(Autonomy()).decide("shell", {"command": "rm -rf /"}).action == "allow"


def test_only_read_only_calls_start_mid_stream_by_default() -> None:
    # Side effects wait for the stop reason unless the spec opts in (an early write_file would
    # survive a max_tokens / content-filter stop and re-run on a retry).
    assert Autonomy().streaming_start == "readOnly"
    assert make_manifest("a").spec.autonomy.streaming_start == "readOnly"
    opted = make_manifest("a", autonomy={"streamingStart": "readOnlyOrIdempotent"}).spec.autonomy
    assert opted.streaming_start == "readOnlyOrIdempotent"


def test_manifest_validation_names_the_field() -> None:
    spec = make_manifest("a", autonomy={"rules": [{"action": "ask", "tool": "shell"}], "approvalTimeoutS": 5}).spec
    assert spec.autonomy.rules[0].action == "ask" and spec.autonomy.approval_timeout_s == 5
    with pytest.raises(ManifestError) as bad:
        make_manifest("a", autonomy={"rules": [{"action": "maybe"}]})
    assert bad.value.field == "spec.autonomy.rules[0].action"
    with pytest.raises(ManifestError) as bad:
        make_manifest("a", autonomy={"approvalTimeoutDecision": "ask"})
    assert bad.value.field == "spec.autonomy.approvalTimeoutDecision"
    with pytest.raises(ManifestError) as bad:
        make_manifest("a", autonomy={"rules": [{"action": "deny", "cmd": "x"}]})
    assert bad.value.field.startswith("spec.autonomy.rules[0]")


def test_the_autonomy_schema_is_plain_json_schema() -> None:
    """The CRD is generated from these models: plain fields, camelCase, no custom types."""
    schema = Autonomy.model_json_schema(by_alias=True)
    assert set(schema["properties"]) == {"rules", "defaultAction", "approvalTimeoutS", "approvalTimeoutDecision", "streamingStart"}
    rule = schema["$defs"]["AutonomyRule"]["properties"]
    assert set(rule) == {"action", "tool", "arguments", "readOnly"}
    assert rule["arguments"]["additionalProperties"] == {"type": "string"}
