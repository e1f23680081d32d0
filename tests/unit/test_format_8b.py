"""The NemoGuard 8B format plugs into the same guard: client-built prompt, strict JSON verdicts."""

from __future__ import annotations

import json

import httpx
import pytest

from langchain_nemoguard import (
    CallOptions,
    ErrorCode,
    InvalidInputError,
    NemoGuard,
    Policy,
    TransportOptions,
)
from langchain_nemoguard.core.formats import CallSpec, NemoGuard8BFormat


def answering(content: str, sent: list[dict] | None = None) -> NemoGuard:
    def h(r: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(json.loads(r.content))
        return httpx.Response(
            200, json={"choices": [{"message": {"content": content}, "finish_reason": "stop"}]}
        )

    return NemoGuard(
        "http://g.test/v1",
        model="nvidia/llama-3.1-nemoguard-8b-content-safety",
        calls=CallOptions(format=NemoGuard8BFormat()),
        transport=TransportOptions(http_client=httpx.Client(transport=httpx.MockTransport(h))),
    )


def test_prompt_is_built_on_the_client() -> None:
    sent: list[dict] = []
    answering('{"User Safety": "safe", "Response Safety": "safe"}', sent).check(prompt="hi", response="hello")
    body = sent[0]
    assert "chat_template_kwargs" not in body
    (msg,) = body["messages"]
    assert msg["role"] == "user"
    text = msg["content"]
    assert "S1: Violence.\nS2: Sexual." in text and "S23: Immoral/Unethical." in text
    assert "user: hi\n\nresponse: agent: hello" in text
    assert text.endswith("Output JSON: ")


def test_json_verdict_with_categories() -> None:
    v = answering('{"User Safety": "unsafe", "Safety Categories": "Violence, controlled substances"}').check(
        prompt="x"
    )
    assert not v.safe
    assert v.categories == ("Violence", "Controlled/Regulated Substances")


def test_custom_taxonomy_becomes_the_category_list() -> None:
    sent: list[dict] = []
    pol = Policy(taxonomy=["Trade Secret Leak: unreleased code"])
    v = answering('{"User Safety": "unsafe", "Safety Categories": "Trade Secret Leak"}', sent).check(
        prompt="x", policy=pol
    )
    assert "S1: Trade Secret Leak." in sent[0]["messages"][0]["content"]
    assert v.categories == ("Trade Secret Leak",)


@pytest.mark.parametrize(
    "content",
    [
        "User Safety: safe",
        '{"User Safety": "safe"} trailing prose',
        '{"User Safety": "maybe"}',
        '{"User Safety": true}',
        '{"user safety": "safe"}',
        '{"User Safety": "safe", "Extra": 1}',
        '{"User Safety": "unsafe", "Safety Categories": ["Violence"]}',
        "[]",
    ],
)
def test_strict_json(content: str) -> None:
    v = answering(content).check(prompt="x")
    assert v.error is ErrorCode.UNPARSABLE
    assert not v.safe


def test_response_key_must_match_the_request() -> None:
    assert answering('{"User Safety": "safe"}').check(prompt="x", response="y").error is ErrorCode.UNPARSABLE
    assert (
        answering('{"User Safety": "safe", "Response Safety": "safe"}').check(prompt="x").error
        is ErrorCode.UNPARSABLE
    )


def test_text_only_and_no_natural_language_policy() -> None:
    fmt = NemoGuard8BFormat()
    with pytest.raises(InvalidInputError, match="custom taxonomy"):
        fmt.build(CallSpec(prompt="x", policy_kwargs={"custom_policy": "..."}), "m")
    from langchain_nemoguard.core.images import prepare_image

    img = prepare_image(_png())
    with pytest.raises(InvalidInputError, match="text-only"):
        fmt.build(CallSpec(prompt="x", image=img), "m")


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    return buf.getvalue()
