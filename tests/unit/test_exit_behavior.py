"""The one rule from a verdict to an exit (``core.verdict.settle``): LangChain's end / error / replace."""

from __future__ import annotations

import pytest

from langchain_nemoguard.core.errors import ConfigurationError, ErrorCode, describe_outage
from langchain_nemoguard.core.policy import Policy
from langchain_nemoguard.core.verdict import (
    DEFAULT_OUTAGE_MESSAGE,
    Action,
    Exit,
    Verdict,
    exit_behavior_of,
    settle,
)

BLOCK = Verdict(user_safe=False, safe=False, categories=("Violence",), action=Action.BLOCK)
REWRITE = BLOCK.replace(action=Action.REWRITE)
LOG = BLOCK.replace(action=Action.LOG)
SAFE = Verdict(user_safe=True)
OUTAGE = Verdict(
    user_safe=None, safe=False, action=Action.BLOCK, error=ErrorCode.CONNECT,
    error_message="guard unavailable (connect): http://guard.internal:8000/v1: ConnectError",
)
FAIL_OPEN = OUTAGE.replace(safe=True, action=Action.ALLOW)
POLICY = Policy(refusal="No.")


@pytest.mark.parametrize("exit_behavior", [None, "end", "error", "replace"])
def test_what_passes_always_passes(exit_behavior: object) -> None:
    for verdict in (SAFE, LOG, FAIL_OPEN):
        assert settle(verdict, POLICY, exit_behavior=exit_behavior).exit is Exit.PASS  # type: ignore[arg-type]


def test_none_keeps_the_policy_map() -> None:
    assert settle(BLOCK, POLICY).exit is Exit.ERROR
    assert settle(BLOCK, POLICY, block="end").exit is Exit.END
    replaced = settle(REWRITE, POLICY, block="end")
    assert replaced.exit is Exit.REPLACE and replaced.text == "No."


@pytest.mark.parametrize("exit_behavior", ["end", "error", "replace"])
def test_an_exit_behavior_applies_to_every_enforced_verdict(exit_behavior: str) -> None:
    for verdict in (BLOCK, REWRITE, OUTAGE):
        assert settle(verdict, POLICY, exit_behavior=exit_behavior).exit is Exit(exit_behavior)  # type: ignore[arg-type]


def test_an_outage_answers_with_the_outage_message_never_the_refusal() -> None:
    s = settle(OUTAGE, POLICY, exit_behavior="end")
    assert s.outage and s.text == DEFAULT_OUTAGE_MESSAGE != POLICY.refusal
    assert settle(OUTAGE, POLICY, exit_behavior="replace", outage_message="Back soon.").text == "Back soon."


def test_an_outage_under_a_rewrite_policy_replaces_under_a_block_policy_blocks() -> None:
    assert settle(OUTAGE, Policy(actions={"*": "rewrite"})).exit is Exit.REPLACE
    assert settle(OUTAGE, Policy(actions={"Violence": "rewrite"})).exit is Exit.ERROR  # "*" is still block
    assert settle(OUTAGE, POLICY, block="end").exit is Exit.END


def test_exit_behavior_is_checked() -> None:
    assert exit_behavior_of(None) is None and exit_behavior_of("end") == "end"
    with pytest.raises(ConfigurationError, match="exit_behavior"):
        exit_behavior_of("raise")


def test_outage_descriptions_name_no_endpoint() -> None:
    for code in ErrorCode:
        text = describe_outage(code)
        assert text and "http" not in text and "internal" not in text.replace("an internal error", "")
    assert describe_outage("not-a-code") == "no verdict"
