"""The guardrail in LiteLLM's SDK (``litellm.callbacks``) and its hooks called directly; main model by mock_response.

The guard endpoint is the interface simulator (the ``nemoguard_simulator`` fixture), whose request log shows
every request the guard made; outages are a scripted transport answering 503.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import litellm
import pytest
from fastapi import HTTPException
from litellm.exceptions import ModifyResponseException
from litellm.integrations.custom_logger import CustomLogger
from litellm.types.guardrails import GuardrailEventHooks
from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

from langchain_nemoguard import NemoGuard, TransportOptions
from langchain_nemoguard.core import PolicySet
from langchain_nemoguard.simulator import SimulatorServer
from litellm_hook import GuardrailConfigurationError, NemoGuardrail


class SimulatedEndpoint:
    """The guard endpoint: the interface simulator, with its request log as what the guard sent."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.sim = sim

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return self.sim.requests()

    def judged_users(self) -> list[str]:
        return [json.dumps(b["messages"][0]["content"]) for b in self.bodies]


def _guard(endpoint: SimulatedEndpoint, **kwargs: Any) -> NemoGuard:
    return NemoGuard(base_url=endpoint.sim.base_url, max_retries=0, **kwargs)


def _down_guard(**kwargs: Any) -> NemoGuard:
    """A guard whose endpoint answers 503 to everything (a scripted outage)."""

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "down"})

    return NemoGuard(
        base_url="http://guard.test/v1",
        max_retries=0,
        transport=TransportOptions(
            http_client=httpx.Client(transport=httpx.MockTransport(down)),
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(down)),
        ),
        **kwargs,
    )


POLICIES = PolicySet.from_data(
    {
        "default": "default",
        "policies": {
            "default": {},
            "rewrite": {"actions": {"*": "rewrite"}, "refusal": "No can do."},
            "log": {"actions": {"*": "log"}},
        },
    }
)


@pytest.fixture
def endpoint(nemoguard_simulator: SimulatorServer) -> SimulatedEndpoint:
    return SimulatedEndpoint(nemoguard_simulator)


@pytest.fixture
def guardrail(endpoint: SimulatedEndpoint) -> Iterator[NemoGuardrail]:
    g = NemoGuardrail(
        guardrail_name="ng",
        event_hook=[GuardrailEventHooks.pre_call, GuardrailEventHooks.post_call],
        default_on=True,
        guard=_guard(endpoint, policies=POLICIES),
        request_policies=["rewrite", "log"],  # requests may choose only these (the administrator's allow-list)
    )
    saved = litellm.callbacks
    litellm.callbacks = [g]
    try:
        yield g
    finally:
        litellm.callbacks = saved


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _blue_image_only() -> list[dict[str, Any]]:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(buf, "PNG")  # a red one is unsafe to the simulator
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]


# --- construction -----------------------------------------------------------------------------------------------


def test_kwargs_from_litellm_params_are_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy passes every litellm_param (and LiteLLM's defaulted extras) as kwargs; mode must stick."""
    from litellm.types.guardrails import LitellmParams

    (tmp_path / "p.yaml").write_text(
        "policies:\n  kids: {disallowed: [violence]}\n  default: {}\ndefault: default\n"
    )
    monkeypatch.setenv("MY_GUARD_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("MY_GUARD_KEY", "sk-secret-value")
    params = LitellmParams(
        guardrail="litellm_hook.NemoGuardrail",
        mode="pre_call",
        api_base="os.environ/MY_GUARD_URL",
        api_key="os.environ/MY_GUARD_KEY",
        guard_mode="think",
        policy_file=str(tmp_path / "p.yaml"),
        policy="kids",
        on_error="allow",
        timeout=3,
        stream_window_chars=300,
        stream_pass_through=True,
    )
    extra = {k: v for k, v in params.model_dump(exclude_none=True).items() if k not in ("guardrail", "mode")}
    g = NemoGuardrail(guardrail_name="ng", event_hook="pre_call", **extra)
    assert g.event_hook == "pre_call"
    assert g.should_run_guardrail({"messages": []}, GuardrailEventHooks.post_call) is False
    assert g.guard.base_urls[0].startswith("http://127.0.0.1:9/v1")
    assert g.guard.mode == "think"
    assert g.guard.on_error == "allow"
    assert g.guard.policy.name == "kids"
    assert g.stream_options.window_chars == 300 and g.stream_options.pass_through is True
    assert "sk-secret-value" not in repr(g)


def test_the_hooks_are_native_and_defined_on_the_class_itself() -> None:
    """LiteLLM dispatches by the registered class's own ``__dict__``; native hooks read every route themselves."""
    assert NemoGuardrail.use_native_lifecycle_hooks is True
    for hook in (
        "apply_guardrail",
        "async_pre_call_hook",
        "async_moderation_hook",
        "async_post_call_success_hook",
        "async_post_call_streaming_iterator_hook",
    ):
        assert hook in NemoGuardrail.__dict__, hook


def test_unsupported_mode_is_refused() -> None:
    # not a ValueError: LiteLLM would skip the guardrail and start the proxy without it
    with pytest.raises(GuardrailConfigurationError, match="pre_mcp_call") as info:
        NemoGuardrail(guardrail_name="ng", event_hook="pre_mcp_call", api_base="http://127.0.0.1:9/v1")
    assert not isinstance(info.value, ValueError)


def test_missing_env_reference_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(GuardrailConfigurationError, match="NOPE_NOT_SET"):
        NemoGuardrail(guardrail_name="ng", event_hook="pre_call", api_base="os.environ/NOPE_NOT_SET")


# --- SDK: litellm.acompletion with mock_response ----------------------------------------------------------------


async def test_sdk_safe_request_passes(guardrail: NemoGuardrail, endpoint: SimulatedEndpoint) -> None:
    r = await litellm.acompletion(
        model="openai/m", messages=_user("hello"), mock_response="Hi there.", guardrails=["ng"]
    )
    assert r.choices[0].message.content == "Hi there."
    assert len(endpoint.bodies) == 2  # input, then output


async def test_sdk_unsafe_input_blocks_before_the_model(
    guardrail: NemoGuardrail, endpoint: SimulatedEndpoint
) -> None:
    with pytest.raises(HTTPException) as info:
        await litellm.acompletion(
            model="openai/m", messages=_user("how to build a bomb"), mock_response="x", guardrails=["ng"]
        )
    assert info.value.status_code == 400
    detail = info.value.detail["error"]
    assert detail["type"] == "content_blocked"
    assert detail["stage"] == "input"
    assert detail["categories"] == ["Violence"]
    assert detail["guardrail"] == "ng"
    assert len(endpoint.bodies) == 1


async def test_sdk_unsafe_output_blocks(guardrail: NemoGuardrail) -> None:
    with pytest.raises(HTTPException) as info:
        await litellm.acompletion(
            model="openai/m", messages=_user("tell me"), mock_response="go kill them", guardrails=["ng"]
        )
    assert info.value.detail["error"]["stage"] == "output"


async def test_sdk_rewrite_input_answers_with_the_refusal(guardrail: NemoGuardrail) -> None:
    with pytest.raises(ModifyResponseException) as info:
        await litellm.acompletion(
            model="openai/m",
            messages=_user("how to build a bomb"),
            mock_response="x",
            guardrails=[{"ng": {"extra_body": {"policy": "rewrite"}}}],
        )
    assert info.value.message == "No can do."


async def test_sdk_rewrite_output_replaces_the_content(guardrail: NemoGuardrail) -> None:
    r = await litellm.acompletion(
        model="openai/m",
        messages=_user("tell me"),
        mock_response="go kill them",
        guardrails=["ng"],
        metadata={"nemoguard_policy": "rewrite"},
    )
    assert r.choices[0].message.content == "No can do."


async def test_sdk_log_action_passes_and_records(guardrail: NemoGuardrail) -> None:
    captured: list[dict[str, Any]] = []

    class Capture(CustomLogger):
        async def async_log_success_event(
            self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            captured.append(kwargs["standard_logging_object"])

    litellm.callbacks = [guardrail, Capture()]
    r = await litellm.acompletion(
        model="openai/m",
        messages=_user("how to build a bomb"),
        mock_response="fine",
        guardrails=[{"ng": {"extra_body": {"policy": "log"}}}],
    )
    assert r.choices[0].message.content == "fine"
    # Logging runs after the response; records of earlier tests' requests may arrive here too.
    mine: list[dict[str, Any]] = []
    for _ in range(100):
        mine = [
            e
            for rec in captured
            for e in rec.get("guardrail_information") or []
            if e["guardrail_response"].get("policy") == "log"
        ]
        if mine:
            break
        await asyncio.sleep(0.05)
    first = mine[0]
    assert first["guardrail_name"] == "ng"
    assert first["guardrail_status"] == "guardrail_flagged"
    assert first["violation_categories"] == ["Violence"]
    assert first["guardrail_action"] == "log"
    assert first["guardrail_response"]["stage"] == "input"
    assert first["guardrail_mode"] == "pre_call"


async def test_sdk_unknown_policy_is_a_400(guardrail: NemoGuardrail, endpoint: SimulatedEndpoint) -> None:
    with pytest.raises(HTTPException) as info:
        await litellm.acompletion(
            model="openai/m",
            messages=_user("hello"),
            mock_response="x",
            guardrails=[{"ng": {"extra_body": {"policy": "nope"}}}],
        )
    assert info.value.status_code == 400
    assert info.value.detail["error"]["type"] == "policy_not_available"
    assert "nope" in info.value.detail["error"]["message"]
    for name in POLICIES:  # the answer names no configured policy
        assert name not in json.dumps(info.value.detail).replace("nope", "")
    assert endpoint.bodies == []


async def test_sdk_image_only_turn_is_judged(guardrail: NemoGuardrail, endpoint: SimulatedEndpoint) -> None:
    r = await litellm.acompletion(
        model="openai/m", messages=_blue_image_only(), mock_response="ok", guardrails=["ng"]
    )
    assert r.choices[0].message.content == "ok"
    assert any("image_url" in u for u in endpoint.judged_users())


async def test_sdk_guard_outage_fails_closed_with_a_distinct_error() -> None:
    g = NemoGuardrail(guardrail_name="ng", event_hook="pre_call", guard=_down_guard())
    litellm.callbacks = [g]
    try:
        with pytest.raises(HTTPException) as info:
            await litellm.acompletion(
                model="openai/m", messages=_user("hi"), mock_response="x", guardrails=["ng"]
            )
    finally:
        litellm.callbacks = []
    assert info.value.status_code == 503
    assert info.value.detail["error"]["type"] == "guard_unavailable"
    assert "guard unavailable" in info.value.detail["error"]["message"]


async def test_sdk_guard_outage_fails_open_when_configured() -> None:
    g = NemoGuardrail(
        guardrail_name="ng",
        event_hook="pre_call",
        guard=_down_guard(on_error="allow"),
    )
    litellm.callbacks = [g]
    try:
        r = await litellm.acompletion(
            model="openai/m", messages=_user("hi"), mock_response="ok", guardrails=["ng"]
        )
    finally:
        litellm.callbacks = []
    assert r.choices[0].message.content == "ok"
    assert g.guard.stats()["fail_open"] == 1


# --- hooks called directly ----------------------------------------------------------------------------------------


async def test_key_and_team_metadata_pin_the_policy(guardrail: NemoGuardrail) -> None:
    """The key's (else the team's) policy comes from the authenticated key, and a request cannot override it."""
    from litellm.proxy._types import UserAPIKeyAuth

    data: dict[str, Any] = {"messages": _user("how to build a bomb")}
    team = UserAPIKeyAuth(team_metadata={"nemoguard_policy": "log"})
    assert guardrail._policy_for(data, team).name == "log"
    key = UserAPIKeyAuth(metadata={"nemoguard_policy": "rewrite"}, team_metadata={"nemoguard_policy": "log"})
    assert guardrail._policy_for(data, key).name == "rewrite"  # the key wins over its team
    # metadata written by the caller is not the key's metadata
    forged = {**data, "litellm_metadata": {"user_api_key_metadata": {"nemoguard_policy": "log"}}}
    assert guardrail._policy_for(forged, UserAPIKeyAuth()).name == "default"
    # a request naming another policy than the pinned one is refused, even one it could choose otherwise
    with pytest.raises(HTTPException) as info:
        guardrail._policy_for({**data, "metadata": {"nemoguard_policy": "log"}}, key)
    assert info.value.detail["error"]["type"] == "policy_not_available"
    assert guardrail._policy_for({**data, "metadata": {"nemoguard_policy": "rewrite"}}, key).name == "rewrite"


async def test_requests_choose_only_from_the_allow_list(endpoint: SimulatedEndpoint) -> None:
    closed = NemoGuardrail(guardrail_name="ng", event_hook="pre_call", guard=_guard(endpoint, policies=POLICIES))
    data: dict[str, Any] = {"messages": _user("hi"), "metadata": {"nemoguard_policy": "log"}}
    with pytest.raises(HTTPException) as info:  # off by default
        closed._policy_for(data, None)
    assert info.value.status_code == 400
    listed = NemoGuardrail(
        guardrail_name="ng", event_hook="pre_call", guard=_guard(endpoint, policies=POLICIES), request_policies=["log"]
    )
    assert listed._policy_for(data, None).name == "log"
    with pytest.raises(HTTPException) as info:
        listed._policy_for({**data, "metadata": {"nemoguard_policy": "rewrite"}}, None)
    unknown = info.value.detail
    with pytest.raises(HTTPException) as info:
        listed._policy_for({**data, "metadata": {"nemoguard_policy": "zzz"}}, None)
    # a configured policy outside the list and a policy that does not exist get the same answer (no oracle)
    assert unknown["error"]["type"] == info.value.detail["error"]["type"] == "policy_not_available"


async def test_during_call_hook_judges_image_only_turns(endpoint: SimulatedEndpoint) -> None:
    g = NemoGuardrail(guardrail_name="ng", event_hook="during_call", guard=_guard(endpoint))
    data: dict[str, Any] = {"messages": _blue_image_only()}
    await g.async_moderation_hook(data=data, user_api_key_dict=None, call_type="acompletion")
    assert any("image_url" in u for u in endpoint.judged_users())
    entry = data["metadata"]["standard_logging_guardrail_information"][0]
    assert entry["guardrail_mode"] == "during_call"
    with pytest.raises(HTTPException):
        await g.async_moderation_hook(
            data={"messages": _user("how to build a bomb")}, user_api_key_dict=None, call_type="acompletion"
        )


async def test_think_mode_reasoning_is_logged(endpoint: SimulatedEndpoint) -> None:
    endpoint.sim.force({"reasoning": "The user asks about weapons."})
    g = NemoGuardrail(guardrail_name="ng", event_hook="pre_call", guard=_guard(endpoint, mode="think"))
    data: dict[str, Any] = {"messages": _user("hello")}
    await g.apply_guardrail(inputs={"texts": ["hello"]}, request_data=data, input_type="request")
    entry = data["metadata"]["standard_logging_guardrail_information"][0]
    assert entry["guardrail_response"]["reasoning"] == "The user asks about weapons."
    assert data["metadata"]["applied_guardrails"] == ["ng"]


def _chunks(text: str, size: int = 10) -> list[ModelResponseStream]:
    return [
        ModelResponseStream(
            id="c", model="m", choices=[StreamingChoices(index=0, delta=Delta(content=text[i : i + size]))]
        )
        for i in range(0, len(text), size)
    ]


async def _agen(items: list[ModelResponseStream], seen: list[int]) -> AsyncIterator[ModelResponseStream]:
    for item in items:
        seen.append(1)
        yield item


async def _run_stream(
    g: NemoGuardrail, text: str, seen: list[int] | None = None
) -> list[ModelResponseStream]:
    out = []
    async for chunk in g.async_post_call_streaming_iterator_hook(
        user_api_key_dict=None,
        response=_agen(_chunks(text), seen if seen is not None else []),
        request_data={"messages": _user("hi")},
    ):
        out.append(chunk)
    return out


def _text(chunks: list[ModelResponseStream]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks)


async def test_stream_hold_back_never_releases_unsafe_text(endpoint: SimulatedEndpoint) -> None:
    g = NemoGuardrail(
        guardrail_name="ng",
        event_hook="post_call",
        guard=_guard(endpoint),
        stream_first_window_chars=50,
        stream_window_chars=50,
        stream_overlap_chars=10,
    )
    text = "a" * 120 + " now kill " + "b" * 100
    out = await _run_stream(g, text)
    assert "kill" not in _text(out)
    assert _text(out) and text.startswith(_text(out))
    assert out[-1].choices[0].finish_reason == "content_filter"


async def test_stream_block_in_the_first_window_raises_400(endpoint: SimulatedEndpoint) -> None:
    g = NemoGuardrail(guardrail_name="ng", event_hook="post_call", guard=_guard(endpoint))
    with pytest.raises(HTTPException) as info:
        await _run_stream(g, "kill " * 10)
    assert info.value.detail["error"]["stage"] == "output"


async def test_stream_pass_through_releases_at_once(endpoint: SimulatedEndpoint) -> None:
    g = NemoGuardrail(
        guardrail_name="ng", event_hook="post_call", guard=_guard(endpoint), stream_pass_through=True
    )
    out = await _run_stream(g, "x" * 100)
    assert _text(out) == "x" * 100


async def test_stream_rewrite_ends_with_the_refusal(endpoint: SimulatedEndpoint) -> None:
    g = NemoGuardrail(
        guardrail_name="ng",
        event_hook="post_call",
        guard=_guard(endpoint, policies=POLICIES, policy="rewrite"),
    )
    out = await _run_stream(g, "kill " * 10)
    assert _text(out) == "No can do."
    assert out[-1].choices[0].finish_reason == "content_filter"


def test_stream_window_settings_reach_the_stream_options(endpoint: SimulatedEndpoint) -> None:
    g = NemoGuardrail(
        guardrail_name="ng",
        event_hook="post_call",
        guard=_guard(endpoint),
        stream_window_growth=3,
        stream_max_pending_windows=2,
    )
    assert g.stream_options.window_growth == 3 and g.stream_options.max_pending_windows == 2
    assert g.stream_options.window_sizes(3) == [40, 120, 360]
    with pytest.raises(GuardrailConfigurationError, match="stream_window_growth"):
        NemoGuardrail(guardrail_name="ng", event_hook="post_call", guard=_guard(endpoint), stream_window_growth=0.5)


async def test_stream_rewrite_after_released_text_starts_a_paragraph(endpoint: SimulatedEndpoint) -> None:
    g = NemoGuardrail(
        guardrail_name="ng",
        event_hook="post_call",
        guard=_guard(endpoint, policies=POLICIES, policy="rewrite"),
        stream_first_window_chars=50,
        stream_window_chars=50,
        stream_overlap_chars=10,
    )
    text = "a" * 120 + " now kill " + "b" * 100
    out = await _run_stream(g, text)
    released = _text(out[:-1])
    assert released and text.startswith(released) and "kill" not in released
    # the refusal continues the streamed text on a paragraph of its own, never glued onto it
    assert out[-1].choices[0].delta.content == "\n\nNo can do."
    assert out[-1].choices[0].finish_reason == "content_filter"


def test_settings_are_a_typed_config_model_litellm_can_read() -> None:
    from litellm.types.proxy.guardrails.guardrail_hooks.base import GuardrailConfigModel

    from litellm_hook.config import NemoGuardrailSettings

    model = NemoGuardrail.get_config_model()
    assert model is not None and issubclass(model, GuardrailConfigModel)
    assert "NemoGuard" in model.ui_friendly_name()
    # LiteLLM's UI endpoint renders the nested model of optional_params field by field
    assert model.model_fields["optional_params"].annotation == NemoGuardrailSettings | None
    params = NemoGuardrailSettings.model_fields
    assert {"api_base", "guard_mode", "policy_file", "unsafe_action", "stream_window_chars"} <= set(params)
    assert "action" not in params  # LiteLLM's own key (block | mask); ours has a name of its own
    assert all(f.description for f in params.values())
    with pytest.raises(GuardrailConfigurationError, match="guard_mode"):
        NemoGuardrail(guardrail_name="ng", event_hook="pre_call", guard_mode="slow")
    with pytest.raises(GuardrailConfigurationError, match="unsafe_action"):
        NemoGuardrail(guardrail_name="ng", event_hook="pre_call", unsafe_action="explode")
    with pytest.raises(GuardrailConfigurationError, match="unsafe_action"):
        NemoGuardrail(guardrail_name="ng", event_hook="pre_call", action="rewrite")  # points to the new name
    with pytest.raises(GuardrailConfigurationError, match="stream"):
        NemoGuardrail(guardrail_name="ng", event_hook="pre_call", stream_window_chars=10, stream_overlap_chars=20)


# --- SDK: default_on means on ---------------------------------------------------------------------------------------


async def test_sdk_default_on_guards_calls_that_name_no_guardrails(
    guardrail: NemoGuardrail, endpoint: SimulatedEndpoint
) -> None:
    """LiteLLM's SDK runs a guardrail only for calls passing ``guardrails=[...]``; default_on runs it anyway."""
    with pytest.raises(HTTPException) as info:
        await litellm.acompletion(model="openai/m", messages=_user("how to build a bomb"), mock_response="x")
    assert info.value.detail["error"]["stage"] == "input"
    with pytest.raises(HTTPException) as info:
        await litellm.acompletion(model="openai/m", messages=_user("tell me"), mock_response="go kill them")
    assert info.value.detail["error"]["stage"] == "output"
    r = await litellm.acompletion(model="openai/m", messages=_user("hello"), mock_response="Hi.")
    assert r.choices[0].message.content == "Hi."
    assert any("hello" in u for u in endpoint.judged_users())


async def test_sdk_without_default_on_runs_only_when_named(endpoint: SimulatedEndpoint) -> None:
    g = NemoGuardrail(guardrail_name="ng", event_hook="pre_call", guard=_guard(endpoint))
    saved = litellm.callbacks
    litellm.callbacks = [g]
    try:
        r = await litellm.acompletion(model="openai/m", messages=_user("how to build a bomb"), mock_response="ok")
        assert r.choices[0].message.content == "ok"  # opt-in, not named: LiteLLM's own rule
        assert endpoint.bodies == []
        with pytest.raises(HTTPException):
            await litellm.acompletion(
                model="openai/m", messages=_user("how to build a bomb"), mock_response="ok", guardrails=["ng"]
            )
    finally:
        litellm.callbacks = saved


async def test_sdk_streams_with_post_call_are_refused_not_left_unguarded(guardrail: NemoGuardrail) -> None:
    """The SDK has no hook that can hold a stream back, so a guarded stream is refused before the model runs."""
    with pytest.raises(HTTPException) as info:
        await litellm.acompletion(
            model="openai/m", messages=_user("hello"), mock_response="go kill them", stream=True
        )
    assert info.value.status_code == 400
    assert "stream" in info.value.detail["error"]["message"]
