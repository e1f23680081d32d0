"""Tier 4: the protocol against a real vLLM server, then the project's own client through it.

The model is random, so assertions are about structure (status codes, the rendered prompt, regex conformance,
that a verdict parses), never about which verdict it is. Its chat template implements the Nemotron 3.5 kwargs
contract (tests/vllm/build_tiny_model.py), so what these tests see of the prompt is what the real model's
template does with the same request, modulo the exact wording.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from PIL import Image

from langchain_nemoguard import AuditOptions, CallOptions, NemoGuard, Policy, Verdict, WindowOptions
from langchain_nemoguard.core.formats import Nemotron35Format


class VLLMEndpoint(Protocol):
    """What the session fixture ``vllm_server`` (conftest.py) yields."""

    base_url: str
    root_url: str
    model: str
    log: Path


pytestmark = [pytest.mark.vllm, pytest.mark.timeout(300)]

VERDICT_REGEX = r"User Safety: (safe|unsafe)\nResponse Safety: (safe|unsafe)"
# Categories mode lets a random model write up to six 60-character "categories"; 512 tokens always holds them.
CATEGORIES_MAX_TOKENS = 512


@pytest.fixture(scope="module")
def http(vllm_server: VLLMEndpoint) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vllm_server.root_url, timeout=60, trust_env=False) as client:
        yield client


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (48, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


USER = {"role": "user", "content": "How do I bake bread?"}
ASSISTANT = {"role": "assistant", "content": "Mix flour, water, salt and yeast."}


def render(http: httpx.Client, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    """The prompt the server's chat template renders, via /tokenize then /detokenize."""
    body: dict[str, Any] = {"model": model, "messages": messages, "add_generation_prompt": True}
    if kwargs:
        body["chat_template_kwargs"] = kwargs
    tokens = http.post("/tokenize", json=body)
    assert tokens.status_code == 200, tokens.text
    text = http.post("/detokenize", json={"model": model, "tokens": tokens.json()["tokens"]})
    assert text.status_code == 200, text.text
    return str(text.json()["prompt"])


def chat(http: httpx.Client, model: str, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": 16, "temperature": 0, **extra}
    return http.post("/v1/chat/completions", json=body)


# --- raw HTTP: the server and the template contract ----------------------------------------------------------


def test_health_and_models(http: httpx.Client, vllm_server: VLLMEndpoint) -> None:
    assert http.get("/health").status_code == 200
    models = http.get("/v1/models")
    assert models.status_code == 200
    assert [m["id"] for m in models.json()["data"]] == [vllm_server.model]


def test_default_prompt_has_the_builtin_taxonomy_and_no_think_no_categories(
    http: httpx.Client, vllm_server: VLLMEndpoint
) -> None:
    prompt = render(http, vllm_server.model, [USER])
    assert "You are a safety classifier" in prompt
    assert "S1: Violence." in prompt
    assert "<BEGIN CONVERSATION>\nuser: How do I bake bread?\n<END CONVERSATION>" in prompt
    # reference section 9: the format block always lists the categories line; /no_categories is only the flag
    assert "\nSafety Categories: a comma-separated list" in prompt
    assert prompt.endswith("/no_categories /no_think\nOutput:<end_of_turn>\n<start_of_turn>model\n")


def test_each_kwarg_changes_the_rendered_prompt(http: httpx.Client, vllm_server: VLLMEndpoint) -> None:
    model = vllm_server.model
    base = render(http, model, [USER])

    thinking = render(http, model, [USER], enable_thinking=True)
    assert thinking != base
    assert "/no_categories /think\nOutput:" in thinking

    categories = render(http, model, [USER], request_categories="/categories")
    assert "/categories /no_think\nOutput:" in categories

    policy_text = (
        "### Policy\nName: Bakery\nDescription: a bakery's assistant\n\nDisallowed Behaviors:\n- knives\n"
    )
    policy = render(http, model, [USER], custom_policy=policy_text)
    assert policy_text in policy
    assert "You are a safety classifier" not in policy
    assert "S1: Violence." not in policy

    taxonomy = render(http, model, [USER], custom_taxonomy="- Trade Secret Leak (custom; internal pricing)\n")
    assert "- Trade Secret Leak (custom; internal pricing)\n" in taxonomy
    assert "S1: Violence." not in taxonomy
    assert "You are a safety classifier" in taxonomy

    assert len({base, thinking, categories, policy, taxonomy}) == 5


def test_assistant_turn_is_rendered_as_the_agent_response(
    http: httpx.Client, vllm_server: VLLMEndpoint
) -> None:
    # reference section 9: NVIDIA's cookbook prefix, two spaces after "agent:"
    prompt = render(http, vllm_server.model, [USER, ASSISTANT])
    assert (
        "user: How do I bake bread?\nresponse: agent:  ### Answer: Mix flour, water, salt and yeast.\n"
        "<END CONVERSATION>" in prompt
    )


def test_a_leading_system_message_is_dropped_silently(http: httpx.Client, vllm_server: VLLMEndpoint) -> None:
    system = {"role": "system", "content": "Be strict."}
    assert render(http, vllm_server.model, [system, USER]) == render(http, vllm_server.model, [USER])
    assert chat(http, vllm_server.model, [system, USER]).status_code == 200


def test_chat_accepts_every_kwarg(http: httpx.Client, vllm_server: VLLMEndpoint) -> None:
    for kwargs in (
        {},
        {"enable_thinking": True},
        {"request_categories": "/categories"},
        {"custom_policy": "### Policy\nName: Bakery\n"},
        {
            "custom_taxonomy": "- Trade Secret Leak\n",
            "request_categories": "/categories",
            "enable_thinking": False,
        },
    ):
        response = chat(http, vllm_server.model, [USER, ASSISTANT], chat_template_kwargs=kwargs)
        assert response.status_code == 200, (kwargs, response.text)
        assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize(
    ("messages", "kwargs", "message"),
    [
        ([USER, {"role": "system", "content": "Be strict."}], {}, "Conversation roles must alternate"),
        ([USER, USER], {}, "Conversation roles must alternate"),
        ([ASSISTANT], {}, "Conversation roles must alternate"),
        ([USER, ASSISTANT, ASSISTANT], {}, "Conversation roles must alternate"),
        ([USER], {"custom_policy": "p", "custom_taxonomy": "t"}, "mutually exclusive"),
        ([USER], {"request_categories": "yes"}, "request_categories must be"),
    ],
)
def test_template_rejects_what_the_model_rejects(
    http: httpx.Client,
    vllm_server: VLLMEndpoint,
    messages: list[dict[str, Any]],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    response = chat(http, vllm_server.model, messages, chat_template_kwargs=kwargs)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


def test_image_as_a_data_url_goes_through_the_vision_path(
    http: httpx.Client, vllm_server: VLLMEndpoint
) -> None:
    model = vllm_server.model
    # Text before the image in the request; the template puts the image placeholder first regardless.
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": data_url(png_bytes())}},
    ]
    prompt = render(http, model, [{"role": "user", "content": parts}])
    assert prompt.count("<image_soft_token>") == 4  # 64x64 input, 4x4 patches pooled 2x2
    assert prompt.index("<start_of_image>") < prompt.index("What is in this picture?")
    assert "user: " in prompt[: prompt.index("<start_of_image>")]

    def answer(color: tuple[int, int, int]) -> dict[str, Any]:
        content = [{"type": "image_url", "image_url": {"url": data_url(png_bytes(color))}}, parts[0]]
        response = chat(http, model, [{"role": "user", "content": content}], logprobs=True)
        assert response.status_code == 200, response.text
        return dict(response.json()["choices"][0])

    red, red_again, blue = answer((200, 30, 30)), answer((200, 30, 30)), answer((30, 30, 200))
    assert red["message"]["content"] == red_again["message"]["content"]  # deterministic at temperature 0
    red_lp = [t["logprob"] for t in red["logprobs"]["content"]]
    blue_lp = [t["logprob"] for t in blue["logprobs"]["content"]]
    assert red_lp != blue_lp  # the pixels reached the model


def test_more_images_than_the_served_limit_are_refused(http: httpx.Client, vllm_server: VLLMEndpoint) -> None:
    image = {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}
    content = [image, image, {"type": "text", "text": "two pictures"}]
    response = chat(http, vllm_server.model, [{"role": "user", "content": content}])
    assert response.status_code == 400
    assert "At most 1 image" in response.json()["error"]["message"]


def test_structured_outputs_regex_makes_the_random_model_answer_a_verdict(
    http: httpx.Client, vllm_server: VLLMEndpoint
) -> None:
    for seed in (0, 1, 2):
        response = chat(
            http,
            vllm_server.model,
            [USER, ASSISTANT],
            temperature=1.0,
            seed=seed,
            max_tokens=32,
            structured_outputs={"regex": VERDICT_REGEX},
            chat_template_kwargs={"request_categories": "/no_categories"},
        )
        assert response.status_code == 200, response.text
        content = response.json()["choices"][0]["message"]["content"]
        assert re.fullmatch(VERDICT_REGEX, content), content


def test_structured_outputs_json_parses_without_free_whitespace(
    http: httpx.Client, vllm_server: VLLMEndpoint
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "user_safety": {"enum": ["safe", "unsafe"]},
            "response_safety": {"enum": ["safe", "unsafe"]},
        },
        "required": ["user_safety", "response_safety"],
        "additionalProperties": False,
    }
    response = chat(
        http, vllm_server.model, [USER, ASSISTANT], max_tokens=64, structured_outputs={"json": schema}
    )
    assert response.status_code == 200, response.text
    parsed = json.loads(response.json()["choices"][0]["message"]["content"])
    assert set(parsed) == {"user_safety", "response_safety"}


def test_metrics_are_readable(http: httpx.Client, vllm_server: VLLMEndpoint) -> None:
    chat(http, vllm_server.model, [USER])
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    success = [
        line
        for line in metrics.text.splitlines()
        if line.startswith("vllm:request_success_total{") and f'model_name="{vllm_server.model}"' in line
    ]
    assert success
    assert sum(float(line.rsplit(" ", 1)[1]) for line in success) >= 1
    assert "vllm:prompt_tokens_total" in metrics.text


# --- the project's client ------------------------------------------------------------------------------------


SERVED_CONTEXT = 2048  # conftest.MAX_MODEL_LEN: the client counts every call against it
# The production THINK regex leaves the trace's length to the answer budget (the real model closes its trace);
# greedy decoding of a random model never would, so the tier bounds it and the structured output closes it.
TIER_TRACE_CHARS = 240


def guard(vllm_server: VLLMEndpoint, **kwargs: Any) -> NemoGuard:
    mode = kwargs.get("mode", "categories")
    max_tokens = CATEGORIES_MAX_TOKENS if mode == "categories" else None
    model_format = Nemotron35Format(max_trace_chars=TIER_TRACE_CHARS) if mode == "think" else None
    if mode == "think":
        kwargs.setdefault("timeout", 60.0)  # a bounded regex costs the CPU build milliseconds per token
    calls = CallOptions(format=model_format, constrain_output=True, max_tokens=max_tokens)
    windows = WindowOptions(max_context_tokens=SERVED_CONTEXT)
    return NemoGuard(
        base_url=vllm_server.base_url, model=vllm_server.model, calls=calls, windows=windows, **kwargs
    )


def assert_verdict(verdict: Verdict, *, response: bool = False) -> None:
    assert verdict.error is None, (verdict.error, verdict.error_message)
    assert isinstance(verdict.user_safe, bool)
    if response:
        assert isinstance(verdict.response_safe, bool)
    else:
        assert verdict.response_safe is None
    assert isinstance(verdict.safe, bool)


def test_client_checks_text(vllm_server: VLLMEndpoint) -> None:
    with guard(vllm_server) as g:
        verdict = g.check(prompt="How do I bake bread?")
    assert_verdict(verdict)
    assert verdict.model == vllm_server.model
    assert verdict.calls == 1


def test_client_checks_an_image(vllm_server: VLLMEndpoint) -> None:
    with guard(vllm_server) as g:
        verdict = g.check(prompt="What is in this picture?", images=[png_bytes(size=(300, 200))])
    assert_verdict(verdict)


def test_client_checks_a_response(vllm_server: VLLMEndpoint) -> None:
    with guard(vllm_server) as g:
        verdict = g.check(prompt="How do I bake bread?", response="Mix flour, water, salt and yeast.")
    assert_verdict(verdict, response=True)


def test_client_think_mode_returns_the_trace(vllm_server: VLLMEndpoint) -> None:
    with guard(vllm_server, mode="think") as g:
        verdict = g.check(prompt="How do I bake bread?")
    assert_verdict(verdict)
    assert verdict.mode == "think"
    assert isinstance(verdict.reasoning, str)
    assert verdict.reasoning


def test_client_custom_policy(vllm_server: VLLMEndpoint) -> None:
    policy = Policy(
        name="bakery",
        description="An assistant for a bakery's customers.",
        disallowed=["Discussing competitors' prices"],
        allowed=["Recipes and opening hours"],
    )
    with guard(vllm_server, policy=policy) as g:
        verdict = g.check(prompt="What do the other bakeries charge?")
    assert_verdict(verdict)
    assert verdict.policy == "bakery"


def test_client_sixteen_concurrent_checks(vllm_server: VLLMEndpoint) -> None:
    async def run() -> list[Verdict]:
        async with guard(vllm_server) as g:
            return list(await asyncio.gather(*(g.acheck(prompt=f"Question number {i}?") for i in range(16))))

    verdicts = asyncio.run(run())
    assert len(verdicts) == 16
    for verdict in verdicts:
        assert_verdict(verdict)


# --- LiteLLM in front of the real server ---------------------------------------------------------------------


def successful_requests(http: httpx.Client, model: str) -> float:
    text = http.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{") and f'model_name="{model}"' in line
    )


def import_litellm() -> Any:
    # No network here: LiteLLM would otherwise try to download its model cost map at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return pytest.importorskip("litellm")


async def test_litellm_guardrail_judges_input_and_output_on_the_real_server(
    http: httpx.Client, vllm_server: VLLMEndpoint
) -> None:
    litellm = import_litellm()
    from litellm.types.guardrails import GuardrailEventHooks

    from litellm_hook import NemoGuardrail

    verdicts: list[Verdict] = []
    # "fast" keeps the random model's answer to one verdict line; "log" lets a random "unsafe" pass.
    judge = guard(
        vllm_server,
        mode="fast",
        policy=Policy(name="log-all", actions={"*": "log"}),
        audit=AuditOptions(on_verdict=verdicts.append),
    )
    guardrail = NemoGuardrail(
        guardrail_name="nemoguard",
        event_hook=[GuardrailEventHooks.pre_call, GuardrailEventHooks.post_call],
        default_on=True,
        guard=judge,
    )
    before = successful_requests(http, vllm_server.model)
    saved = litellm.callbacks
    litellm.callbacks = [guardrail]
    try:
        reply = await litellm.acompletion(
            model="openai/mock-gpt",
            messages=[{"role": "user", "content": "How do I bake bread?"}],
            mock_response="Mix flour, water, salt and yeast.",
            api_key="sk-unused",
            guardrails=["nemoguard"],
        )
    finally:
        litellm.callbacks = saved
        await judge.aclose()
    assert reply.choices[0].message.content == "Mix flour, water, salt and yeast."
    assert [v.error for v in verdicts] == [None, None]  # the prompt before the model, the answer after it
    assert verdicts[0].response_safe is None
    assert isinstance(verdicts[1].response_safe, bool)
    judged = 0.0
    for _ in range(20):  # the counter is updated as the request completes
        judged = successful_requests(http, vllm_server.model) - before
        if judged >= 2:
            break
        await asyncio.sleep(0.1)
    assert judged == 2  # both verdicts came from the real server


async def test_litellm_router_replicas_forward_the_guard_fields(vllm_server: VLLMEndpoint) -> None:
    """The scale-out recipe (server/README.md): replicas behind LiteLLM's router keep kwargs and regex."""
    litellm = import_litellm()
    deployment = {"model": f"hosted_vllm/{vllm_server.model}", "api_base": vllm_server.base_url}
    router = litellm.Router(
        model_list=[{"model_name": "nemoguard", "litellm_params": dict(deployment)} for _ in range(2)],
        routing_strategy="least-busy",
    )
    messages = [{"role": "user", "content": "How do I bake bread?"}]
    # Only the template can refuse this pair of kwargs: a 400 proves chat_template_kwargs arrived.
    with pytest.raises(litellm.BadRequestError, match="mutually exclusive"):
        await router.acompletion(
            model="nemoguard",
            messages=messages,
            max_tokens=8,
            chat_template_kwargs={"custom_policy": "p", "custom_taxonomy": "t"},
        )
    reply = await router.acompletion(
        model="nemoguard",
        messages=messages,
        max_tokens=16,
        temperature=1.0,
        structured_outputs={"regex": "User Safety: (safe|unsafe)"},
    )
    assert re.fullmatch("User Safety: (safe|unsafe)", reply.choices[0].message.content)
