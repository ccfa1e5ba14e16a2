"""manifest.yaml as Host.apply writes it (libyaml's CSafeDumper when PyYAML has it) loads back, with
the pure-Python loader `Host.boot` uses, as the same manifest: any text in a system prompt (unicode,
control characters, line separators, multi-line, leading/trailing spaces), floats, empty lists."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_runtime.host import _YAML_DUMPER
from agent_runtime.manifest import AgentManifest, load_manifests_text, make_manifest

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)  # no lone surrogates (not UTF-8)


def _round_trip(m: AgentManifest) -> list[AgentManifest]:
    return load_manifests_text(yaml.dump(m.to_dict(), Dumper=_YAML_DUMPER, sort_keys=False))


def test_the_dumper_is_libyaml_when_available() -> None:
    assert _YAML_DUMPER is getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=TEXT, name=TEXT.filter(bool), timeout=st.floats(min_value=1e-6, max_value=3600, exclude_min=False),
       approval=st.floats(min_value=1e-3, max_value=86_400), rules=st.booleans(), labels=st.dictionaries(
           st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), TEXT, max_size=3))
def test_manifest_yaml_round_trips(prompt: str, name: str, timeout: float, approval: float, rules: bool,
                                   labels: dict[str, str]) -> None:
    m = make_manifest("a", systemPrompt=prompt, model={"name": name[:200]}, tools=[],
                      limits={"toolTimeoutS": timeout},
                      autonomy={"approvalTimeoutS": approval,
                                "rules": [{"action": "ask", "tool": name[:200], "arguments": {"path": prompt}}] if rules else []})
    m = m.model_copy(update={"metadata": m.metadata.model_copy(update={"labels": labels})})
    assert _round_trip(m) == [m]


def test_edge_texts_round_trip() -> None:
    for prompt in ["", " ", "a\n", "\n\nb  \n", "\u2028x\u2029", "\x85", "\ufeffbom", "tab\there", "- item", "key: value",
                   "'quoted'", '"dq"', "#comment", "null", "~", "yes", "1e3", "0o17", "é ✓ 中文 🙂", "\x00\x07\x1b"]:
        m = make_manifest("a", systemPrompt=prompt)
        assert _round_trip(m) == [m], repr(prompt)
