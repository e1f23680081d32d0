"""nemoguard policy validate's checks and policy new's scaffold."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_nemoguard.cli._endpoint import default_served_context
from langchain_nemoguard.core.policy import Policy, PolicySet
from langchain_nemoguard.workbench.policy_tools import Finding, fit, scaffold, validate_file

CTX = 4096


def _validate(tmp_path: Path, text: str, name: str = "p.yaml", **kw: object) -> list[Finding]:
    path = tmp_path / name
    path.write_text(text)
    return validate_file(path, mode=kw.get("mode", "think"), context=kw.get("context", CTX))  # type: ignore[arg-type]


def _levels(findings: list[Finding], level: str) -> list[str]:
    return [str(f) for f in findings if f.level == level]


def test_the_default_context_is_what_nemoguard_serve_serves() -> None:
    assert default_served_context() == 4096


def test_a_good_policy_gets_only_its_numbers(tmp_path: Path) -> None:
    findings = _validate(
        tmp_path,
        """
default: kids
policies:
  kids:
    description: A homework helper for children.
    disallowed: [Sexual content of any kind, Instructions for weapons]
    allowed: [Age-appropriate biology lessons]
  builtin:
    ignore_categories: [Profanity]
    actions: {Violence: log, "*": block}
""",
    )
    assert _levels(findings, "error") == [] and _levels(findings, "warning") == []
    infos = _levels(findings, "info")
    assert len(infos) == 2 and "leave ~" in infos[0] and "4096-token context" in infos[0]


def test_schema_errors_are_all_reported_with_field_and_reason(tmp_path: Path) -> None:
    findings = _validate(
        tmp_path,
        """
policies:
  a:
    disallowed: [x]
    disalowed: [y]
  b:
    description: only a description
  c:
    actions: {"*": explode}
""",
    )
    errors = _levels(findings, "error")
    assert any("policy 'a': unknown field 'disalowed' (did you mean 'disallowed'?)" in e for e in errors)
    assert any("policy 'b'" in e and "at least one disallowed" in e for e in errors)
    assert any("policy 'c'" in e and "actions" in e for e in errors)


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    findings = _validate(tmp_path, "policies:\n  a:\n    disallowed: [x\n  b: 1\n")
    assert len(findings) == 1 and findings[0].level == "error"
    assert "p.yaml:" in findings[0].message and "not valid YAML" in findings[0].message
    assert "default 'zz' is not one of the policies" in str(
        _validate(tmp_path, "default: zz\npolicies: {a: {}}\n")[0]
    )


def test_unknown_categories_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    findings = _validate(
        tmp_path,
        """
policies:
  builtin:
    ignore_categories: [Profanty]
    actions: {Violense: rewrite}
  trade:
    taxonomy: ["Trade Secret Leak: unreleased code", "Pricing: internal prices"]
    actions: {Trade Secrets: log}
""",
    )
    errors = _levels(findings, "error")
    assert (
        "error: policy 'builtin': actions: unknown category 'Violense', not in the built-in taxonomy (did you mean 'Violence'?)"
        in errors
    )
    assert any("ignore_categories: unknown category 'Profanty'" in e and "'Profanity'" in e for e in errors)
    assert any(
        "policy 'trade'" in e and "'Trade Secrets'" in e and "this policy's taxonomy" in e for e in errors
    )


def test_loose_names_of_known_categories_are_accepted(tmp_path: Path) -> None:
    findings = _validate(
        tmp_path, "policies:\n  b:\n    actions: {controlled substances: log, pii/privacy: rewrite}\n"
    )
    assert _levels(findings, "error") == []


def test_custom_policy_actions_other_than_its_name_are_warned(tmp_path: Path) -> None:
    findings = _validate(
        tmp_path,
        "policies:\n  kids:\n    disallowed: [x things]\n    actions: {Violence: log, kids: rewrite}\n",
    )
    warnings = _levels(findings, "warning")
    assert len(warnings) == 1 and "'Violence'" in warnings[0] and "may never apply" in warnings[0]


def test_contradictions(tmp_path: Path) -> None:
    findings = _validate(
        tmp_path,
        """
policies:
  p:
    disallowed:
      - Giving medical dosage advice for prescription drugs
      - Sharing home addresses
    allowed:
      - sharing home addresses.
      - Giving general dosage advice for prescription drugs
      - Explaining what a pharmacist does
  q:
    ignore_categories: [Violence]
    actions: {Violence: block}
  t:
    taxonomy: ["Pricing: internal price lists"]
    allowed: [Pricing]
""",
    )
    errors, warnings = _levels(findings, "error"), _levels(findings, "warning")
    assert any("'sharing home addresses.' is also disallowed" in e for e in errors)
    assert any(
        "'Giving general dosage advice for prescription drugs' overlaps disallowed" in w for w in warnings
    )
    assert not any("pharmacist" in x for x in errors + warnings)
    assert any("actions['Violence'] = block never applies" in w for w in warnings)
    assert any("policy 't': allowed item 'Pricing' is a category name" in e for e in errors)


def test_length_against_the_served_context(tmp_path: Path) -> None:
    rules = "\n".join(
        f"      - Rule number {i} - do not do the thing that rule {i} forbids in any form" for i in range(300)
    )
    long_policy = f"policies:\n  big:\n    disallowed:\n{rules}\n"
    errors = _levels(_validate(tmp_path, long_policy), "error")
    assert len(errors) == 1 and "too long" in errors[0] and "--max-model-len" in errors[0]
    assert _levels(_validate(tmp_path, long_policy, context=131072), "error") == []
    medium = "\n".join(f"      - Rule {i} - do not do the thing that rule {i} forbids" for i in range(60))
    warnings = _levels(_validate(tmp_path, f"policies:\n  mid:\n    disallowed:\n{medium}\n"), "warning")
    assert len(warnings) == 1 and "WindowOptions(max_tokens=" in warnings[0]


def test_fit_counts_the_phrased_policy_and_the_mode_answer() -> None:
    p = Policy(name="p", disallowed=["x" * 400])
    think, fast = fit(p, mode="think", context=CTX), fit(p, mode="fast", context=CTX)
    assert think.policy_tokens > 100 and think.answer_tokens == 1024 and fast.answer_tokens == 32
    assert think.room == CTX - think.policy_tokens - think.template_tokens - 1024
    assert fit(Policy(), mode="think", context=CTX).policy_tokens == 0  # built-in: no policy text is sent


def test_scaffold_is_a_loadable_model_card_policy(tmp_path: Path) -> None:
    data = scaffold(
        name="kids",
        audience="children 8-12",
        description="A homework helper",
        disallowed=["Doing the homework for them", " "],
        allowed=["Explaining a method"],
        actions={"*": "rewrite"},
    )
    body = data["policies"]["kids"]
    assert body["description"] == "A homework helper. Audience: children 8-12."
    assert body["disallowed"] == ["Doing the homework for them"]
    policy = PolicySet.from_data(data)["kids"]
    assert policy.kind == "custom_policy" and policy.action_for([]) == "rewrite"
    with pytest.raises(ValueError, match="disallowed"):
        scaffold(name="empty")
