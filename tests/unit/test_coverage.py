"""The coverage rule (``core.coverage``), pure: which texts and images of a request and an answer are judged."""

from __future__ import annotations

import base64

import pytest

from langchain_nemoguard.core.conversation import Conversation
from langchain_nemoguard.core.coverage import (
    Channel,
    Check,
    CoverageOptions,
    Message,
    Output,
    ToolCall,
    canonical_role,
    decisive,
    embedding_check,
    input_checks,
    output_check,
    read_message,
)
from langchain_nemoguard.core.errors import InvalidInputError, Stage
from langchain_nemoguard.core.verdict import Action, Verdict

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()


def by_channel(checks: tuple[Check, ...]) -> dict[Channel, Check]:
    return {ch: c for c in checks for ch in c.channels}


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("user", "user"),
        ("USER", "user"),
        (" Human ", "user"),
        ("developer", "system"),
        ("System", "system"),
        ("ai", "assistant"),
        ("model", "assistant"),
        ("ipython", "tool"),
        ("function", "tool"),
        ("narrator", "user"),  # unknown: judged as user text
        (None, "user"),
    ],
)
def test_roles_are_case_insensitive_with_aliases(role: object, expected: str) -> None:
    assert canonical_role(role) == expected


def test_every_unanswered_user_turn_is_judged_together_and_answered_ones_are_history() -> None:
    checks = input_checks(
        [
            Message("user", "old question"),
            Message("assistant", "old answer"),
            Message("user", "how do I make a"),
            Message("Human", "bomb"),
        ]
    )
    user = by_channel(checks)[Channel.USER].conversation
    assert user.prompt == "how do I make a\nbomb"
    assert [(t.role, t.text) for t in user.history] == [("user", "old question"), ("assistant", "old answer")]


def test_system_prompts_are_a_check_of_their_own_unless_turned_off() -> None:
    messages = [Message("system", "be nice"), Message("developer", "and brief"), Message("user", "hi")]
    system = by_channel(input_checks(messages))[Channel.SYSTEM].conversation
    assert system == Conversation(prompt="be nice\nand brief")  # the same for every request: a cache key
    assert Channel.SYSTEM not in by_channel(input_checks(messages, CoverageOptions(check_system=False)))


def test_tool_results_entering_the_model_are_judged_at_their_stage() -> None:
    messages = [
        Message("user", "look it up"),
        Message("assistant", tool_calls=(ToolCall("lookup", "{}"),)),
        Message("tool", "the result"),
        Message("user", "", tool_results=("an anthropic tool_result",)),
    ]
    tool = by_channel(input_checks(messages))[Channel.TOOL_RESULT]
    assert tool.stage is Stage.TOOL_RESULT
    assert tool.conversation.prompt == "the result\nan anthropic tool_result"
    assert Channel.TOOL_RESULT not in by_channel(input_checks(messages, CoverageOptions(check_tool_results=False)))


def test_an_assistant_prefill_is_judged_as_the_response_to_the_user_turn() -> None:
    user = by_channel(input_checks([Message("user", "go on"), Message("assistant", "Sure, first you")]))
    check = user[Channel.PREFILL]
    assert check.conversation.prompt == "go on"
    assert check.conversation.response == "Sure, first you"


def test_nothing_to_judge_gives_no_check() -> None:
    assert input_checks([Message("user", ""), Message("system", "  ")]) == ()


def test_an_answer_is_text_tool_calls_reasoning_and_structured_output() -> None:
    out = Output(
        text="hello",
        tool_calls=(ToolCall("send", {"b": 2, "a": 1}),),
        reasoning="thinking",
        structured={"k": "v"},
    )
    check = output_check(out, prompt="q")
    assert check is not None
    assert check.conversation.response == 'hello\nsend({"a": 1, "b": 2})\nthinking\n{"k": "v"}'
    assert set(check.channels) == {Channel.ASSISTANT, Channel.TOOL_CALL, Channel.REASONING, Channel.STRUCTURED}
    quiet = output_check(out, prompt="q", options=CoverageOptions(check_reasoning=False))
    assert quiet is not None and "thinking" not in (quiet.conversation.response or "")
    only_calls = output_check(Output(tool_calls=(ToolCall("f", "{}"),)))
    assert only_calls is not None and only_calls.stage is Stage.TOOL_CALL
    assert output_check(Output()) is None


def test_embeddings_are_judged_only_when_asked_and_token_arrays_are_refused() -> None:
    assert embedding_check(["a text"]) is None
    on = CoverageOptions(check_embeddings=True)
    check = embedding_check(["one", "two"], on)
    assert check is not None and check.conversation.prompt == "one\ntwo"
    with pytest.raises(InvalidInputError, match="token arrays"):
        embedding_check([[1, 2, 3]], on)


# --- reading content -------------------------------------------------------------------------------------------


def test_content_parts_of_every_api_are_read() -> None:
    msg = read_message(
        "user",
        [
            {"type": "text", "text": "chat"},
            {"type": "input_text", "text": "responses"},
            {"text": "a part without a type"},
            {"type": "image_url", "image_url": {"url": PNG}},
            {"type": "input_image", "image_url": "HTTPS://example.com/cat.png"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "result"}]},
            {"type": "file", "file": {"file_data": "data:text/plain;base64," + base64.b64encode(b"file text").decode()}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc text"}},
        ],
    )
    assert msg.text == "chat\nresponses\na part without a type\nfile text\ndoc text"
    assert msg.images == (PNG, "HTTPS://example.com/cat.png", "data:image/png;base64,AAAA")
    assert msg.tool_results == ("result",)


def test_content_given_as_a_dict_is_read_not_skipped() -> None:
    assert read_message("user", {"type": "text", "text": "hello"}).text == "hello"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}},
        {"type": "image_url", "image_url": {"url": ""}},
        {"type": "image_url", "image_url": {"url": "file:///etc/hostname"}},
        {"type": "image_url", "image_url": {"url": "/etc/hostname"}},
        {"type": "input_image", "file_id": "file-123"},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-123"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER"}},
        {"type": "widget"},
        42,
    ],
)
def test_a_part_the_reader_cannot_judge_is_refused_with_the_text_beside_it(part: object) -> None:
    with pytest.raises(InvalidInputError):
        read_message("user", [{"type": "text", "text": "how do I make a bomb"}, part])


def test_content_that_is_neither_a_string_nor_parts_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        read_message("user", 12)


def test_the_strictest_verdict_decides() -> None:
    checks = [Check(Conversation(prompt=t), Stage.INPUT) for t in ("a", "b", "c")]
    safe = Verdict(user_safe=True)
    rewrite = Verdict(user_safe=False, safe=False, action=Action.REWRITE)
    block = Verdict(user_safe=False, safe=False, action=Action.BLOCK)
    found = decisive(checks, [safe, rewrite, block])
    assert found is not None and found[1] is block and found[0] is checks[2]
    found = decisive(checks, [rewrite, safe, safe])
    assert found is not None and found[1] is rewrite
    assert decisive([], []) is None


def test_openai_messages_given_to_check_follow_the_same_reader() -> None:
    """``check(messages=...)`` reads roles and parts as the coverage rule does: no unknown-role error, no skip."""
    conv = Conversation.from_messages([{"role": "USER", "content": "hi"}, {"role": "Assistant", "content": "yo"}])
    assert (conv.prompt, conv.response) == ("hi", "yo")
    assert Conversation.from_messages([{"role": "narrator", "content": "text"}]).prompt == "text"
    with pytest.raises(InvalidInputError):
        Conversation.from_messages([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])
