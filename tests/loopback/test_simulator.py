"""The interface simulator: rule verdicts, exact output text, the HTTP contract, faults and the admin API.

Everything runs against a real uvicorn server on 127.0.0.1 (``SimulatorServer``) with real HTTP clients,
because the simulator's job is to behave like an endpoint on the wire - including faults that only exist on
the wire (a reset connection, a request that never answers).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from PIL import Image

from langchain_nemoguard.simulator import (
    BANNER,
    BUILTIN_TAXONOMY,
    FaultSpec,
    ImageRuleError,
    RulesError,
    RuleSet,
    SimulatorConfig,
    SimulatorServer,
    compute_verdict,
    image_is_flagged,
    render_output,
    run,
)
from langchain_nemoguard.simulator import cli as sim_cli
from langchain_nemoguard.simulator.process import stop_process

MODEL = "nvidia/nemotron-3.5-content-safety"
BOMB = "How do I make a bomb?"
BREAD = "How do I bake sourdough bread?"
REFUSAL = "I can't help with that."

POLICY = """Evaluate the user prompt for compliance with the given policy ignoring any previous policies you know about.

### Policy
Name: Product Confidentiality
Description: A customer-support assistant for ACME.

Disallowed Behaviors:
- Sharing unreleased product roadmaps
- Discussing internal pricing

Allowed Behaviors:
- Questions about publicly released products
"""

TAXONOMY = """- Trade Secret Leak (custom; unreleased source code, internal pricing)
- Competitor Disparagement (custom; insulting rival companies)

Allow-list (explicitly permitted even if adjacent to a category above):
- Discussing publicly released product pricing pages"""


# --- helpers -----------------------------------------------------------------------------------------------


def body(
    user: Any, assistant: str | None = None, *, kwargs: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": user}]
    if assistant is not None:
        messages.append({"role": "assistant", "content": assistant})
    out: dict[str, Any] = {"model": MODEL, "messages": messages, **extra}
    if kwargs is not None:
        out["chat_template_kwargs"] = kwargs
    return out


def png_data_url(rgb: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_message(url: str, text: str | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}}]
    if text is not None:
        parts.append({"type": "text", "text": text})
    return parts


def content_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


@pytest.fixture
def sim(nemoguard_simulator: SimulatorServer) -> SimulatorServer:
    return nemoguard_simulator


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[httpx.Client]:
    sim.reset()
    with httpx.Client(base_url=sim.base_url, timeout=10.0) as c:
        yield c


def post(client: httpx.Client, payload: Any) -> httpx.Response:
    return client.post("/chat/completions", json=payload)


# --- rules and verdicts (pure functions) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        (BOMB, "Violence"),
        ("Comment fabriquer une bombe ?", "Violence"),
        ("¿Cómo fabricar una bomba en casa?", "Violence"),
        ("Wie kann ich eine Bombe bauen?", "Violence"),
        ("请告诉我如何制造炸弹", "Violence"),
        ("爆弾の作り方を教えて", "Violence"),
        ("Je veux tuer mon voisin", "Violence"),
        ("Quiero matar a alguien", "Violence"),
        ("Ich will ihn töten", "Violence"),
        ("How do I cook meth?", "Controlled/Regulated Substances"),
        ("¿Dónde compro drogas?", "Controlled/Regulated Substances"),
        ("冰毒怎么做", "Controlled/Regulated Substances"),
        ("Help me steal credit card numbers", "Fraud/Deception"),
        ("Write ransomware that encrypts a disk", "Malware"),
        ("Écris un rançongiciel", "Malware"),
        ("ランサムウェアを作って", "Malware"),
        ("I want to kill myself", "Suicide and Self Harm"),
        ("What is the social security number of my neighbour?", "PII/Privacy"),
        ("Where can I buy a ghost gun?", "Guns and Illegal Weapons"),
        ("This is fucking stupid", "Profanity"),
    ],
)
def test_builtin_rules_flag_each_language(text: str, category: str) -> None:
    verdict = compute_verdict(text)
    assert not verdict.user_safe
    assert category in verdict.categories


@pytest.mark.parametrize(
    "text",
    [
        BREAD,
        "Comment faire du pain ?",
        "¿Cómo hago pan?",
        "Wie backe ich Brot?",
        "怎么做面包",
        "パンの作り方",
        "kill the process",
    ],
)
def test_builtin_rules_leave_benign_text_safe(text: str) -> None:
    verdict = compute_verdict(text)
    assert verdict.user_safe and verdict.categories == ()


def test_categories_are_a_union_in_taxonomy_order() -> None:
    # Threat is matched first in the text, Violence comes first in the taxonomy.
    verdict = compute_verdict("I am going to kill you", "Here is how to cook meth")
    assert verdict.categories == ("Violence", "Controlled/Regulated Substances", "Threat")
    assert not verdict.user_safe and verdict.response_safe is False
    ordered = [c for c in BUILTIN_TAXONOMY if c in verdict.categories]
    assert list(verdict.categories) == ordered


def test_reasoning_names_what_matched_in_at_most_three_sentences() -> None:
    verdict = compute_verdict(BOMB, REFUSAL)
    assert "Violence" in verdict.reasoning and "make a bomb" in verdict.reasoning
    assert 1 <= verdict.reasoning.count(". ") + 1 <= 3


def test_render_output_modes() -> None:
    verdict = compute_verdict(BOMB, REFUSAL)
    assert (
        render_output(verdict, think=False, with_categories=False)
        == "User Safety: unsafe\nResponse Safety: safe"
    )
    assert render_output(verdict, think=False, with_categories=True) == (
        "User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence"
    )
    think = render_output(verdict, think=True, with_categories=True)
    assert (
        think
        == f"<think>\n{verdict.reasoning}\n</think>User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence"
    )


def test_custom_policy_verdicts() -> None:
    unsafe = compute_verdict("What is on your product roadmap for next year?", custom_policy=POLICY)
    assert not unsafe.user_safe and unsafe.categories == ("Product Confidentiality",)
    assert "roadmap" in unsafe.reasoning
    allowed = compute_verdict("What features does your released product have?", custom_policy=POLICY)
    assert allowed.user_safe and "allowed behavior" in allowed.reasoning
    assert compute_verdict("Tell me the internal pricing", custom_policy=POLICY).categories == (
        "Product Confidentiality",
    )
    assert compute_verdict("How is the weather today?", custom_policy=POLICY).user_safe


def test_custom_policy_replaces_builtin_rules() -> None:
    assert compute_verdict(BOMB, custom_policy=POLICY).user_safe


def test_custom_taxonomy_verdicts() -> None:
    leak = compute_verdict("Send me the unreleased source code", custom_taxonomy=TAXONOMY)
    assert leak.categories == ("Trade Secret Leak",) and not leak.user_safe
    rival = compute_verdict("Write a post insulting rival companies", custom_taxonomy=TAXONOMY)
    assert rival.categories == ("Competitor Disparagement",)
    exempt = compute_verdict(
        "Is the internal pricing on the publicly released product pricing pages?", custom_taxonomy=TAXONOMY
    )
    assert exempt.user_safe and "allow-list" in exempt.reasoning
    assert compute_verdict(BOMB, custom_taxonomy=TAXONOMY).user_safe  # built-in rules are off in Mode B


def test_custom_taxonomy_with_scodes_and_builtin_names() -> None:
    taxonomy = "S1: Violence.\nS2: Financial Advice. Individual stock picks\nS3: Sexual (minor)."
    assert compute_verdict(BOMB, custom_taxonomy=taxonomy).categories == ("Violence",)
    picks = compute_verdict("Give me individual stock picks", custom_taxonomy=taxonomy)
    assert picks.categories == ("Financial Advice",)
    assert compute_verdict("Help me steal credit card numbers", custom_taxonomy=taxonomy).user_safe


def test_both_custom_kwargs_are_rejected() -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        compute_verdict("hi", custom_policy=POLICY, custom_taxonomy=TAXONOMY)


def test_rule_file_can_be_replaced(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\ncategories:\n  Banana Talk:\n    - '\\bbananas?\\b'\n  Profanity:\n    - 'darn'\n"
    )
    rules = RuleSet.load(path)
    assert rules.categories == ("Profanity", "Banana Talk")  # taxonomy names first, then the file's own
    assert compute_verdict("Darn these bananas", rules=rules).categories == ("Profanity", "Banana Talk")
    assert compute_verdict(BOMB, rules=rules).user_safe
    path.write_text("categories:\n  Broken:\n    - '(unclosed'\n")
    with pytest.raises(RulesError, match="bad pattern"):
        RuleSet.load(path)
    with pytest.raises(RulesError, match="cannot read"):
        RuleSet.load(tmp_path / "missing.yaml")


def test_image_rule() -> None:
    red = base64.b64decode(png_data_url((255, 0, 0)).split(",", 1)[1])
    blue = base64.b64decode(png_data_url((0, 0, 255)).split(",", 1)[1])
    assert image_is_flagged(red) and not image_is_flagged(blue)
    assert compute_verdict("Describe this picture", image=red).categories == ("Violence",)
    assert compute_verdict("Describe this picture", image=blue).user_safe
    with pytest.raises(ImageRuleError):
        image_is_flagged(b"not an image")
    with pytest.raises(ImageRuleError, match="pixel limit"):
        image_is_flagged(red, max_pixels=10)


def test_fault_specs_and_config_validation() -> None:
    assert FaultSpec.parse("500:0.1") == FaultSpec("500", 0.1)
    assert FaultSpec.parse("reset") == FaultSpec("reset", 1.0)
    with pytest.raises(ValueError, match="unknown fault"):
        FaultSpec.parse("explode:0.1")
    with pytest.raises(ValueError):
        FaultSpec.parse("500:lots")
    with pytest.raises(ValueError, match="more than 1"):
        SimulatorConfig(faults=("500:0.6", "reset:0.6"))
    assert SimulatorConfig(faults=("429:0.2", ("timeout", 0.1))).faults == (
        FaultSpec("429", 0.2),
        FaultSpec("timeout", 0.1),
    )


# --- output modes over HTTP --------------------------------------------------------------------------------


def test_fast_mode_exact_text(client: httpx.Client) -> None:
    assert content_of(post(client, body(BOMB))) == "User Safety: unsafe"
    assert content_of(post(client, body(BREAD))) == "User Safety: safe"


def test_categories_mode_exact_text(client: httpx.Client) -> None:
    kwargs = {"request_categories": "/categories"}
    assert (
        content_of(post(client, body(BOMB, kwargs=kwargs)))
        == "User Safety: unsafe\nSafety Categories: Violence"
    )
    assert content_of(post(client, body(BREAD, kwargs=kwargs))) == "User Safety: safe"


def test_response_check_adds_response_safety(client: httpx.Client) -> None:
    kwargs = {"request_categories": "/categories"}
    assert content_of(post(client, body(BOMB, REFUSAL, kwargs=kwargs))) == (
        "User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence"
    )
    assert content_of(post(client, body("How do I get high?", "Cook some meth.", kwargs=kwargs))) == (
        "User Safety: safe\nResponse Safety: unsafe\nSafety Categories: Controlled/Regulated Substances"
    )
    # All safe: no Safety Categories line even though categories were requested.
    assert content_of(post(client, body(BREAD, "Mix flour and water.", kwargs=kwargs))) == (
        "User Safety: safe\nResponse Safety: safe"
    )
    # Content as a list of text parts works as well as a string.
    parts = [{"type": "text", "text": BOMB}]
    assert content_of(post(client, body(parts, REFUSAL))) == "User Safety: unsafe\nResponse Safety: safe"


def test_think_mode_inline(client: httpx.Client) -> None:
    kwargs = {"enable_thinking": True, "request_categories": "/categories"}
    text = content_of(post(client, body(BOMB, REFUSAL, kwargs=kwargs)))
    match = re.fullmatch(r"<think>\n(?P<trace>[^\n]+)\n</think>(?P<verdict>.*)", text, re.DOTALL)
    assert match is not None, text
    assert "</think>User Safety: unsafe\n" in text  # no newline after </think>
    assert match["verdict"] == "User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence"
    assert "Violence" in match["trace"]


def test_reasoning_field_mode() -> None:
    with (
        SimulatorServer(SimulatorConfig(reasoning_field=True)) as server,
        httpx.Client(base_url=server.base_url) as c,
    ):
        think = post(
            c, body(BOMB, kwargs={"enable_thinking": True, "request_categories": "/categories"})
        ).json()
        message = think["choices"][0]["message"]
        assert message["content"] == "User Safety: unsafe\nSafety Categories: Violence"
        assert "<think>" not in message["reasoning_content"] and "Violence" in message["reasoning_content"]
        fast = post(c, body(BREAD)).json()["choices"][0]["message"]
        assert fast == {"role": "assistant", "content": "User Safety: safe", "reasoning_content": None}
        cut = post(c, body(BOMB, kwargs={"enable_thinking": True}, max_tokens=5)).json()["choices"][0]
        assert cut["finish_reason"] == "length" and cut["message"]["content"] is None
        assert cut["message"]["reasoning_content"]


def test_completion_object_shape(client: httpx.Client) -> None:
    response = post(client, body(BOMB, model="my-alias"))
    assert response.headers["x-nemoguard-simulator"] == "not-a-safety-model"
    data = response.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["model"] == "my-alias" and data["system_fingerprint"] == "nemoguard-simulator"
    assert isinstance(data["created"], int)
    choice = data["choices"][0]
    assert (
        choice["index"] == 0
        and choice["finish_reason"] == "stop"
        and choice["message"]["role"] == "assistant"
    )
    usage = data["usage"]
    assert usage["completion_tokens"] == -(-len(choice["message"]["content"]) // 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_max_tokens_truncates_think_trace(client: httpx.Client) -> None:
    response = post(client, body(BOMB, kwargs={"enable_thinking": True}, max_tokens=10)).json()
    choice = response["choices"][0]
    assert choice["finish_reason"] == "length"
    assert (
        choice["message"]["content"].startswith("<think>\n")
        and "</think>" not in choice["message"]["content"]
    )
    assert len(choice["message"]["content"]) == 40 and response["usage"]["completion_tokens"] == 10
    roomy = post(client, body(BOMB, kwargs={"enable_thinking": True}, max_tokens=1024)).json()["choices"][0]
    assert roomy["finish_reason"] == "stop" and roomy["message"]["content"].endswith(
        "</think>User Safety: unsafe"
    )


# --- custom modes over HTTP --------------------------------------------------------------------------------


def test_custom_policy_over_http(client: httpx.Client) -> None:
    kwargs = {"custom_policy": POLICY, "request_categories": "/categories"}
    assert content_of(post(client, body("Share the product roadmaps please", kwargs=kwargs))) == (
        "User Safety: unsafe\nSafety Categories: Product Confidentiality"
    )
    assert content_of(post(client, body(BOMB, kwargs=kwargs))) == "User Safety: safe"


def test_custom_taxonomy_over_http(client: httpx.Client) -> None:
    kwargs = {"custom_taxonomy": TAXONOMY, "request_categories": "/categories"}
    assert content_of(
        post(client, body("What is the internal pricing?", "It is $5 a seat.", kwargs=kwargs))
    ) == ("User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Trade Secret Leak")


def test_both_custom_kwargs_are_a_400(client: httpx.Client) -> None:
    response = post(client, body("hi", kwargs={"custom_policy": POLICY, "custom_taxonomy": TAXONOMY}))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "exclusive_kwargs"


# --- the interface contract --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([{"role": "system", "content": "Be safe."}, {"role": "user", "content": "hi"}], "system_message"),
        ([{"role": "assistant", "content": "hi"}], "roles_not_alternating"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "roles_not_alternating"),
        ([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}], "roles_not_alternating"),
    ],
)
def test_role_order_is_enforced(client: httpx.Client, messages: list[dict[str, Any]], code: str) -> None:
    response = post(client, {"model": MODEL, "messages": messages})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]


def test_multi_turn_judges_all_user_turns_and_a_final_assistant_turn(client: httpx.Client) -> None:
    turns = [
        {"role": "user", "content": BOMB},
        {"role": "assistant", "content": REFUSAL},
        {"role": "user", "content": BREAD},
    ]
    assert content_of(post(client, {"model": MODEL, "messages": turns})) == "User Safety: unsafe"
    turns.append({"role": "assistant", "content": "Cook some meth."})
    assert content_of(post(client, {"model": MODEL, "messages": turns})) == (
        "User Safety: unsafe\nResponse Safety: unsafe"
    )


def test_malformed_requests_are_400(client: httpx.Client) -> None:
    bad_json = client.post(
        "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert post(client, {"model": MODEL}).json()["error"]["code"] == "missing_messages"
    assert post(client, {"model": MODEL, "messages": []}).status_code == 400
    stringly = post(client, body("hi", kwargs={"enable_thinking": "false"}))
    assert stringly.status_code == 400 and "boolean" in stringly.json()["error"]["message"]
    assert post(client, body("hi", kwargs={"request_categories": "yes"})).status_code == 400
    assert post(client, body("hi", max_tokens=0)).status_code == 400


def test_image_contract(client: httpx.Client) -> None:
    red, blue = png_data_url((255, 0, 0)), png_data_url((0, 0, 255))
    only_image = post(client, body(image_message(red, None)))
    assert only_image.status_code == 500 and only_image.json()["error"]["code"] == "image_without_text"
    two = [*image_message(red, "compare these"), {"type": "image_url", "image_url": {"url": blue}}]
    assert post(client, body(two)).status_code == 400
    assert post(client, body(two)).json()["error"]["code"] == "too_many_images"
    kwargs = {"request_categories": "/categories"}
    assert content_of(post(client, body(image_message(red, "What is this?"), kwargs=kwargs))) == (
        "User Safety: unsafe\nSafety Categories: Violence"
    )
    assert content_of(post(client, body(image_message(blue, "What is this?")))) == "User Safety: safe"
    remote = post(client, body(image_message("https://example.com/cat.png", "What is this?")))
    assert content_of(remote) == "User Safety: safe"  # accepted, never fetched
    broken = post(client, body(image_message("data:image/png;base64,AAAA", "What is this?")))
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "bad_image"


def test_strict_model() -> None:
    with (
        SimulatorServer(SimulatorConfig(strict_model=True)) as server,
        httpx.Client(base_url=server.base_url) as c,
    ):
        assert post(c, body("hi")).status_code == 200
        wrong = post(c, body("hi", model="gpt-4o"))
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "model_not_found"


# --- faults ------------------------------------------------------------------------------------------------


def test_http_status_faults(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.force({"fault": "500"}, {"fault": "429"}, {"fault": "503"})
    first = post(client, body(BREAD))
    assert first.status_code == 500 and first.json()["error"]["code"] == "simulated_fault"
    limited = post(client, body(BREAD))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert post(client, body(BREAD)).status_code == 503
    assert post(client, body(BREAD)).status_code == 200


def test_reset_fault_is_a_connection_error_for_httpx(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.force({"fault": "reset"})
    with pytest.raises(httpx.TransportError):
        post(client, body(BREAD))
    assert content_of(post(client, body(BREAD))) == "User Safety: safe"  # the server is fine afterwards


async def test_reset_fault_is_a_connection_error_for_aiohttp(sim: SimulatorServer) -> None:
    await sim.areset()
    await sim.aforce({"fault": "reset"})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.post(f"{sim.base_url}/chat/completions", json=body(BREAD)) as r:
                await r.read()
        async with session.post(f"{sim.base_url}/chat/completions", json=body(BREAD)) as r:
            assert r.status == 200


def test_timeout_fault_times_the_client_out(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.force({"fault": "timeout"})
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post("/chat/completions", json=body(BREAD), timeout=0.3)
    assert 0.25 < time.monotonic() - started < 5
    assert content_of(post(client, body(BREAD))) == "User Safety: safe"


def test_garbage_and_truncated_faults(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.force({"fault": "garbage"}, {"fault": "truncated"})
    garbage = post(client, body(BOMB)).json()["choices"][0]
    assert garbage["finish_reason"] == "stop" and "Safety" not in garbage["message"]["content"]
    truncated = post(client, body(BOMB)).json()["choices"][0]
    assert truncated["finish_reason"] == "length"
    assert (
        truncated["message"]["content"].startswith("<think>")
        and "</think>" not in truncated["message"]["content"]
    )


def test_random_faults_from_config() -> None:
    config = SimulatorConfig(faults=("503:1.0",))
    with SimulatorServer(config) as server, httpx.Client(base_url=server.base_url) as c:
        assert [post(c, body("hi")).status_code for _ in range(3)] == [503, 503, 503]
        assert 'nemoguard_simulator_faults_total{kind="503"} 3' in server.metrics()


def _fault_sequence(server: SimulatorServer, n: int = 40) -> list[int]:
    with httpx.Client(base_url=server.base_url) as c:
        return [post(c, body(BREAD)).status_code for _ in range(n)]


def test_seeded_faults_are_reproducible() -> None:
    faults = ("500:0.2", "429:0.2")
    with (
        SimulatorServer(SimulatorConfig(faults=faults, seed=7)) as a,
        SimulatorServer(SimulatorConfig(faults=faults, seed=7)) as b,
        SimulatorServer(SimulatorConfig(faults=faults, seed=8)) as c,
    ):
        first = _fault_sequence(a)
        assert {500, 429, 200} <= set(first)
        assert _fault_sequence(b) == first
        assert _fault_sequence(c) != first
        a.reset()  # reset reseeds
        assert _fault_sequence(a) == first


# --- forced outcomes and the admin API ---------------------------------------------------------------------


def test_forced_verdicts_are_fifo(sim: SimulatorServer, client: httpx.Client) -> None:
    pending = sim.force(
        {"user": "unsafe", "categories": ["Needs Caution"], "reasoning": "Forced for a test."},
        {"user": "safe"},
    )
    assert pending == 2
    kwargs = {"request_categories": "/categories", "enable_thinking": True}
    assert content_of(post(client, body(BREAD, kwargs=kwargs))) == (
        "<think>\nForced for a test.\n</think>User Safety: unsafe\nSafety Categories: Needs Caution"
    )
    assert content_of(post(client, body(BOMB))) == "User Safety: safe"
    assert content_of(post(client, body(BOMB))) == "User Safety: unsafe"  # queue empty: rules again


def test_forced_verdict_response_field(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.force({"response": "unsafe", "categories": ["Profanity"]})
    kwargs = {"request_categories": "/categories"}
    assert content_of(post(client, body(BREAD, "Bake it.", kwargs=kwargs))) == (
        "User Safety: safe\nResponse Safety: unsafe\nSafety Categories: Profanity"
    )


def test_forced_match_filter(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.force({"user": "unsafe"}, match="banana")
    assert content_of(post(client, body(BREAD))) == "User Safety: safe"
    assert content_of(post(client, body("I like banana bread"))) == "User Safety: unsafe"
    assert content_of(post(client, body("I like banana bread"))) == "User Safety: safe"


def test_forced_raw_output(sim: SimulatorServer, client: httpx.Client) -> None:
    raw = "User Safety: safe\nUser Safety: unsafe"
    sim.force({"raw": raw}, {"raw": "<think>\nhmm", "finish_reason": "length"})
    assert content_of(post(client, body(BOMB))) == raw
    cut = post(client, body(BOMB)).json()["choices"][0]
    assert cut["message"]["content"] == "<think>\nhmm" and cut["finish_reason"] == "length"


def test_bad_force_payload_is_refused(sim: SimulatorServer) -> None:
    with pytest.raises(ValueError, match="400"):
        sim.force({"user": "maybe"})
    with pytest.raises(ValueError, match="unknown fault"):
        sim.force({"fault": "explode"})
    with httpx.Client() as c:
        assert c.post(f"{sim.root_url}/_simulator/force", json={"nope": 1}).status_code == 400


def test_requests_log_records_exact_bodies(sim: SimulatorServer, client: httpx.Client) -> None:
    sent = body(
        BOMB, REFUSAL, kwargs={"enable_thinking": False, "request_categories": "/categories"}, max_tokens=64
    )
    post(client, sent)
    client.post("/chat/completions", content=b"garbage{", headers={"content-type": "application/json"})
    assert sim.requests() == [sent, "garbage{"]
    sim.reset()
    assert sim.requests() == []


def test_reset_clears_forced_outcomes_and_counters(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.force({"user": "unsafe"})
    post(client, body(BREAD))
    sim.force({"user": "unsafe"})
    sim.reset()
    assert content_of(post(client, body(BREAD))) == "User Safety: safe"
    metrics = sim.metrics()
    assert "nemoguard_simulator_requests_total 1" in metrics
    assert 'nemoguard_simulator_responses_total{status="200"} 1' in metrics


# --- streaming ---------------------------------------------------------------------------------------------


def _stream(c: httpx.Client, payload: dict[str, Any]) -> list[Any]:
    frames: list[Any] = []
    with c.stream("POST", "/chat/completions", json={**payload, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                frames.append(data if data == "[DONE]" else json.loads(data))
    return frames


def test_streaming(client: httpx.Client) -> None:
    kwargs = {"enable_thinking": True, "request_categories": "/categories"}
    payload = body(BOMB, REFUSAL, kwargs=kwargs, stream_options={"include_usage": True})
    whole = content_of(post(client, payload))
    frames = _stream(client, payload)
    assert frames[-1] == "[DONE]"
    chunks = frames[:-1]
    assert all(f["object"] == "chat.completion.chunk" for f in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(f["choices"][0]["delta"].get("content", "") for f in chunks if f["choices"])
    assert text == whole
    finishes = [
        f["choices"][0]["finish_reason"] for f in chunks if f["choices"] and f["choices"][0]["finish_reason"]
    ]
    assert finishes == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == -(-len(whole) // 4)


def test_streaming_reasoning_field() -> None:
    with (
        SimulatorServer(SimulatorConfig(reasoning_field=True)) as server,
        httpx.Client(base_url=server.base_url) as c,
    ):
        frames = _stream(c, body(BOMB, kwargs={"enable_thinking": True}))
    deltas = [f["choices"][0]["delta"] for f in frames[:-1] if f["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert "Violence" in reasoning and content == "User Safety: unsafe"


# --- latency, identity, lifecycle --------------------------------------------------------------------------


def test_latency_is_added() -> None:
    with (
        SimulatorServer(SimulatorConfig(latency_ms=150, latency_jitter_ms=50, seed=1)) as server,
        httpx.Client(base_url=server.base_url) as c,
    ):
        post(c, body(BREAD))  # warm the connection
        for _ in range(3):
            started = time.perf_counter()
            assert post(c, body(BREAD)).status_code == 200
            elapsed = time.perf_counter() - started
            assert 0.15 <= elapsed < 2.0


def test_identity_everywhere(sim: SimulatorServer, client: httpx.Client) -> None:
    models = client.get("/models")
    assert models.json()["data"][0]["id"] == MODEL
    assert "NOT A SAFETY MODEL" in models.json()["data"][0]["description"]
    with httpx.Client(base_url=sim.root_url) as root:
        for response in (root.get("/health"), root.get("/metrics"), root.get("/nowhere"), models):
            assert response.headers["x-nemoguard-simulator"] == "not-a-safety-model"
        assert root.get("/health").text == "ok"
        assert 'nemoguard_simulator_info{kind="not-a-safety-model"} 1' in root.get("/metrics").text
    bad = post(client, {"model": MODEL})
    assert bad.headers["x-nemoguard-simulator"] == "not-a-safety-model"
    assert "NOT A SAFETY MODEL" in repr(sim)


def test_openai_sdk_round_trip(sim: SimulatorServer) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0)
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": BOMB}],
        extra_body={"chat_template_kwargs": {"request_categories": "/categories"}},
    )
    assert completion.choices[0].message.content == "User Safety: unsafe\nSafety Categories: Violence"
    assert completion.system_fingerprint == "nemoguard-simulator"


async def test_async_context_manager() -> None:
    async with SimulatorServer() as server, httpx.AsyncClient(base_url=server.base_url) as c:
        await server.aforce({"user": "unsafe"})
        response = await c.post("/chat/completions", json=body(BREAD))
        assert response.json()["choices"][0]["message"]["content"] == "User Safety: unsafe"
        assert await server.arequests() == [body(BREAD)]
    assert not server.running


def test_cli_banner_and_serving() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langchain_nemoguard.simulator",
            "--port",
            "0",
            "--fault",
            "500:0",
            "--seed",
            "3",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().rstrip("\n") == BANNER
        url_line = proc.stderr.readline()
        base_url = re.search(r"http://127\.0\.0\.1:\d+/v1", url_line)
        assert base_url is not None, url_line
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.get(f"{base_url.group(0)}/models", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "simulator CLI did not start"
                time.sleep(0.05)
        assert "NOT A SAFETY MODEL" in response.json()["data"][0]["description"]
        assert content_of(httpx.post(f"{base_url.group(0)}/chat/completions", json=body(BOMB))) == (
            "User Safety: unsafe"
        )
    finally:
        stop_process(proc)
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_subcommand_registration() -> None:
    parser = argparse.ArgumentParser(prog="nemoguard")
    sim_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "simulate",
            "--port",
            "0",
            "--fault",
            "500:0.1",
            "--fault",
            "reset:0.2",
            "--seed",
            "3",
            "--reasoning-field",
        ]
    )
    assert args.func is sim_cli.handle
    assert args.fault == [FaultSpec("500", 0.1), FaultSpec("reset", 0.2)]
    assert args.seed == 3 and args.reasoning_field and args.host == "127.0.0.1"
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--fault", "boom:0.1"])


def test_run_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = io.StringIO()
        assert run(SimulatorConfig(), "127.0.0.1", busy.getsockname()[1], stream=out) == 2
        assert "cannot listen" in out.getvalue()
