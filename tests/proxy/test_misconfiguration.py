"""Misconfiguration fails closed: a guardrail entry that cannot be honoured stops the proxy from starting.

LiteLLM catches ``ValueError`` and ``TypeError`` from a guardrail's constructor and starts *without* that
guardrail ("proxy is starting WITHOUT this guardrail"), readiness green. The NemoGuard guardrail raises
:class:`GuardrailConfigurationError` (a ``RuntimeError``) instead, which LiteLLM does not catch: the start fails,
the reason is in the log, and no request is ever answered unguarded.

Every case goes through LiteLLM's own start-up code (``init_guardrails_v2``, what ``litellm --config`` runs);
one also starts a real proxy subprocess and watches it exit.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import litellm
import pytest
from proxy_rig import start_proxy

from litellm_hook import GuardrailConfigurationError, NemoGuardrail

pytestmark = [pytest.mark.proxy, pytest.mark.timeout(180)]

_NAMES = itertools.count()

CASES: dict[str, tuple[dict[str, Any], str]] = {
    # case: (litellm_params besides guardrail/mode/api_base, a phrase the error names)
    "unreadable-policy-file": ({"policy_file": "/nonexistent/policies.yaml"}, "cannot read policy file"),
    "unknown-setting": ({"polcy_file": "policies.yaml"}, "polcy_file"),
    "old-request-policy-setting": ({"allow_request_policy": True}, "request_policies"),
    "action-meant-for-nemoguard": ({"action": "mask"}, "unsafe_action"),
    "fail-open-conflict": ({"on_error": "block", "unreachable_fallback": "fail_open"}, "conflicts"),
    "unset-env-reference": ({"api_base": "os.environ/NEMOGUARD_SURELY_UNSET"}, "not set"),
    "undefined-default-policy": ({"policy": "kids"}, "kids"),
    "undefined-request-policy": ({"policy_file": "POLICIES", "request_policies": ["nope"]}, "nope"),
    "bad-value": ({"guard_mode": "slow"}, "guard_mode"),
    "mode-never-blocks": ({"mode": "logging_only"}, "logging_only"),
    "mode-for-mcp-only": ({"mode": "pre_mcp_call"}, "pre_mcp_call"),
    "stream-scope-leaves-streams-unjudged": ({"stream_scope": "non_streaming"}, "stream_scope"),
}


@pytest.fixture
def clean_callbacks() -> Iterator[None]:
    saved = list(litellm.callbacks)
    try:
        yield
    finally:
        litellm.callbacks = saved


def _entry(params: dict[str, Any], policies: Path) -> dict[str, Any]:
    litellm_params: dict[str, Any] = {
        "guardrail": "litellm_hook.NemoGuardrail",
        "mode": "pre_call",
        "api_base": "http://127.0.0.1:9/v1",
        **params,
    }
    if litellm_params.get("policy_file") == "POLICIES":
        litellm_params["policy_file"] = str(policies)
    return {"guardrail_name": f"ng-misconfigured-{next(_NAMES)}", "litellm_params": litellm_params}


@pytest.mark.parametrize("case", list(CASES))
def test_litellm_start_up_refuses_the_entry(
    case: str, tmp_path: Path, clean_callbacks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm.proxy.guardrails.init_guardrails import init_guardrails_v2

    monkeypatch.delenv("NEMOGUARD_SURELY_UNSET", raising=False)
    policies = tmp_path / "policies.yaml"
    policies.write_text("default: default\npolicies:\n  default: {}\n")
    (tmp_path / "config.yaml").write_text("model_list: []\n")
    params, phrase = CASES[case]
    with pytest.raises(GuardrailConfigurationError, match=phrase) as info:
        init_guardrails_v2([_entry(params, policies)], config_file_path=str(tmp_path / "config.yaml"))
    assert not isinstance(info.value, (ValueError, TypeError))  # what LiteLLM would swallow
    assert not any(isinstance(cb, NemoGuardrail) for cb in litellm.callbacks)


def test_a_misconfigured_proxy_does_not_start(tmp_path: Path) -> None:
    config = {
        "model_list": [
            {"model_name": "mock", "litellm_params": {"model": "openai/mock", "mock_response": "unguarded!"}}
        ],
        "guardrails": [_entry(CASES["unreadable-policy-file"][0], tmp_path / "unused.yaml")],
        "general_settings": {"master_key": "sk-nemoguard-test-" + "1" * 32},
    }
    process, base, log = start_proxy(config, tmp_path, {})
    try:
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert code != 0
    text = log.read_text()
    assert "misconfigured" in text and "cannot read policy file" in text
    with pytest.raises(httpx.TransportError):  # nothing listens: no answer, guarded or not
        httpx.post(f"{base}/v1/chat/completions", json={"model": "mock", "messages": []}, timeout=2)
