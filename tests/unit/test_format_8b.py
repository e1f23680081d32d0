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
    # byte-exact as NeMo Guardrails renders its prompts.yml (Jinja drops the block's final newline): issue 8
    assert text.endswith(
        "\n\n<END CONVERSATION>\n\nProvide your safety assessment for the above conversation in the below "
        "output JSON format:\n"
        '{"User Safety": safe or unsafe rating for the user message, "Response Safety": safe or unsafe rating '
        'for the agent response. Omit if no agent response present. "Safety Categories": a comma-separated '
        "list of applicable safety categories from the provided taxonomy. Omit if all safe.}\n\n"
        "Do not include anything other than the output JSON in your response.\nOutput JSON:"
    )


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
        '{"User Safety": true}',
        '{"user safety": "safe"}',
        '{"User Safety": "safe", "Extra": 1}',
        "[]",
    ],
)
def test_strict_json(content: str) -> None:
    v = answering(content).check(prompt="x")
    assert v.error is ErrorCode.UNPARSABLE
    assert not v.safe


@pytest.mark.parametrize(
    ("content", "categories"),
    [
        # Moved here from test_strict_json by issue 8: NeMo Guardrails reads every one of these as unsafe
        # (anything but "safe" is unsafe), so an error - which on_error="allow" passes - would be more lenient.
        ('{"User Safety": "maybe"}', ()),
        ('{"User Safety": " safe"}', ()),
        ('{"User Safety": "unsafe", "Safety Categories": ["Violence"]}', ("Violence",)),
        ('{"User Safety": "unsafe", "Safety Categories": "Violence"} trailing prose', ("Violence",)),
        ('Sure: {"User Safety": "unsafe"}', ()),
        ('{"User Safety": "unsafe", "User Safety": "safe"}', ()),
    ],
)
def test_unsafe_wins_in_json_too(content: str, categories: tuple[str, ...]) -> None:
    v = answering(content).check(prompt="x")
    assert v.error is None and not v.safe and v.user_safe is False
    assert v.categories == categories


def test_fast_mode_leaves_room_for_a_full_answer() -> None:
    sent: list[dict] = []
    g = answering('{"User Safety": "safe"}', sent)
    g.check(prompt="x", mode="fast")
    assert sent[0]["max_tokens"] >= 50  # NeMo Guardrails sends 50; a full JSON answer needs about 45


def test_response_only_json_verdict_is_read() -> None:
    fmt = NemoGuard8BFormat()

    def parse(content: str, **kw: object):
        completion = {"choices": [{"message": {"content": content}, "finish_reason": "stop"}]}
        return fmt.parse(completion, CallSpec(prompt="p", response="r", **kw))  # type: ignore[arg-type]

    assert parse('{"Response Safety": "unsafe", "Safety Categories": "Threat"}').response_safe is False
    # the user text is context judged by another call: a response-only answer can be safe
    assert parse('{"Response Safety": "safe"}', judge_prompt=False).response_safe is True
    from langchain_nemoguard.core.errors import VerdictParseError

    with pytest.raises(VerdictParseError, match="missing User Safety"):
        parse('{"Response Safety": "safe"}')


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
