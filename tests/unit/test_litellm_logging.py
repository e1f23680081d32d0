"""The guardrail's logging entry: small, complete where it matters, and what LiteLLM's sanitisers would have kept.

``NemoGuardrail._record`` hands LiteLLM the payload's JSON and puts the dict into the recorded entry afterwards,
skipping LiteLLM's three sanitising walks (they cost proxy CPU on every request). That is only sound while the
payload is a fixed point of all three; these tests hold it to that, and to the entry LiteLLM's loggers read.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import json
from typing import Any

import pytest
from litellm.litellm_core_utils.core_helpers import (
    filter_exceptions_from_params,
    redact_nested_match_and_regex_keys,
)
from litellm.litellm_core_utils.sensitive_data_masker import mask_credentials_in_payload
from litellm.types.guardrails import GuardrailEventHooks

from langchain_nemoguard.core.coverage import Channel
from langchain_nemoguard.core.errors import ErrorCode, Stage
from langchain_nemoguard.core.verdict import Action, Verdict
from litellm_hook import NemoGuardrail
from litellm_hook.guardrail import log_payload

SAFE = Verdict(user_safe=True, policy="default", model="nvidia/nemotron-3.5-content-safety", mode="fast", latency_ms=31.25)
UNSAFE_THINK = Verdict(
    user_safe=False,
    categories=("Violence", "Criminal Planning/Confessions"),
    reasoning="The user asks how to hurt someone; password=hunter2 is not a key here.",
    safe=False,
    action=Action.BLOCK,
    policy="strict",
    model="nvidia/nemotron-3.5-content-safety",
    mode="think",
    latency_ms=120.5,
    calls=3,
    suppressed_categories=("Profanity",),
    truncated=True,
    score=0.97,
    user_score=0.97,
    simulator=True,
)
FAIL_OPEN = Verdict(
    user_safe=None,
    error=ErrorCode.CONNECT,
    error_message="cannot reach the guard endpoint",
    safe=True,
    policy="default",
    model="nvidia/nemotron-3.5-content-safety",
    latency_ms=2.0,
)
ALWAYS = {"safe", "categories", "action", "latency_ms", "stage", "channels"}


def test_payload_always_has_the_documented_fields_and_only_informative_extras() -> None:
    payload = log_payload(SAFE, Stage.INPUT, [Channel.USER])
    # None values are left out, as LiteLLM's logging has always dropped them (no `error` on a verdict)
    assert set(payload) == ALWAYS | {"user_safe", "policy", "model"}
    assert payload["safe"] is True and payload["user_safe"] is True and payload["categories"] == []
    assert payload["stage"] == "input" and payload["channels"] == ["user"]
    assert payload["latency_ms"] == 31.25


def test_payload_carries_everything_an_unsafe_or_failed_verdict_says() -> None:
    unsafe = log_payload(UNSAFE_THINK, Stage.OUTPUT, [Channel.ASSISTANT, "tool_call"])
    assert unsafe["categories"] == ["Violence", "Criminal Planning/Confessions"]
    assert unsafe["action"] == "block" and unsafe["safe"] is False and unsafe["policy"] == "strict"
    assert unsafe["reasoning"] == UNSAFE_THINK.reasoning
    assert unsafe["score"] == 0.97 and unsafe["calls"] == 3
    assert unsafe["suppressed_categories"] == ["Profanity"]
    assert unsafe["truncated"] is True and unsafe["simulator"] is True
    assert unsafe["channels"] == ["assistant", "tool_call"]
    failed = log_payload(FAIL_OPEN, Stage.INPUT, [Channel.USER])
    assert failed["error"] == "connect" and failed["error_message"] == "cannot reach the guard endpoint"
    assert failed["safe"] is True and "user_safe" not in failed
    # every value is plain JSON
    assert json.loads(json.dumps(unsafe)) == unsafe


@pytest.mark.parametrize("verdict", [SAFE, UNSAFE_THINK, FAIL_OPEN], ids=["safe", "unsafe-think", "fail-open"])
def test_payload_is_what_litellms_sanitisers_would_keep(verdict: Verdict) -> None:
    payload = log_payload(verdict, Stage.INPUT, [Channel.USER, Channel.SYSTEM])
    assert filter_exceptions_from_params(payload) == payload
    assert redact_nested_match_and_regex_keys(payload) == payload
    assert mask_credentials_in_payload(payload) == payload


def _guardrail() -> NemoGuardrail:
    return NemoGuardrail(guardrail_name="ng", event_hook=["pre_call", "post_call"], api_base="http://127.0.0.1:9/v1")


class _LoggingObj:
    def __init__(self) -> None:
        self.litellm_params: dict[str, Any] = {"metadata": {}}
        self.model_call_details: dict[str, Any] = {}


@pytest.mark.parametrize("verdict", [SAFE, UNSAFE_THINK, FAIL_OPEN], ids=["safe", "unsafe-think", "fail-open"])
def test_recorded_entry_holds_the_payload_dict_wherever_litellm_put_it(verdict: Verdict) -> None:
    g = _guardrail()
    logging_obj = _LoggingObj()
    data: dict[str, Any] = {"metadata": {}, "litellm_logging_obj": logging_obj}
    g._record(verdict, data, Stage.INPUT, GuardrailEventHooks.pre_call, [Channel.USER])
    g._record(SAFE, data, Stage.OUTPUT, GuardrailEventHooks.post_call, [Channel.ASSISTANT])
    entries = data["metadata"]["standard_logging_guardrail_information"]
    assert [e["guardrail_response"] for e in entries] == [
        log_payload(verdict, Stage.INPUT, [Channel.USER]),
        log_payload(SAFE, Stage.OUTPUT, [Channel.ASSISTANT]),
    ]
    first = entries[0]
    assert first["guardrail_name"] == "ng" and first["guardrail_provider"] == "nemoguard"
    assert first["guardrail_mode"] == "pre_call"
    assert first["violation_categories"] == list(verdict.categories)
    assert first["guardrail_action"] == verdict.action.value
    assert first["duration"] == pytest.approx(verdict.latency_ms / 1e3)
    # the logging object (spend logs on pass-through routes) sees the same entries, dicts included
    synced = logging_obj.litellm_params["metadata"]["standard_logging_guardrail_information"]
    assert [e["guardrail_response"] for e in synced] == [e["guardrail_response"] for e in entries]
    assert all(isinstance(e["guardrail_response"], dict) for e in synced)
    assert data["metadata"]["applied_guardrails"] == ["ng"]


def test_recorded_entry_goes_to_litellm_metadata_on_routes_that_use_it() -> None:
    g = _guardrail()
    data: dict[str, Any] = {"litellm_metadata": {}, "metadata": {"user_tag": "kept"}}
    g._record(SAFE, data, Stage.INPUT, GuardrailEventHooks.pre_call, [Channel.USER])
    bucket = data.get("litellm_metadata", {}).get("standard_logging_guardrail_information") or data["metadata"].get(
        "standard_logging_guardrail_information"
    )
    assert bucket and bucket[-1]["guardrail_response"] == log_payload(SAFE, Stage.INPUT, [Channel.USER])
