"""The asymmetric reading rules (core/formats/reading.py, R1-R8), one behaviour at a time.

Every case in the first table is an answer NeMo Guardrails reads as unsafe and the old parser called
"unparsable" - which ``on_error="allow"`` passes.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from langchain_nemoguard import ErrorCode
from langchain_nemoguard.core.errors import VerdictParseError
from langchain_nemoguard.core.formats import CallSpec, Nemotron35Format, parse_verdict_text
from langchain_nemoguard.core.formats.reading import DEFAULT_MAX_COMPLETION_CHARS


def parse(text: str, **kw: object):
    return parse_verdict_text(text, **kw)  # type: ignore[arg-type]


def completion(content: str | None, finish: str = "stop", reasoning: str | None = None) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {"choices": [{"message": message, "finish_reason": finish}]}


STRAY = [
    "User Safety: unsafe.",
    "User Safety: unsafe (the user asks for a weapon)",
    "User Safety: unsafe\r\nSafety Categories: Violence",
    "User Safety: safe\rUser Safety: unsafe",
    "User Safety: unsafe\u2028Safety Categories: Violence",
    "```\nUser Safety: unsafe\nSafety Categories: Violence\n```",
    "User Safety: unsafe\nSafety Categories: Violence\nSafety Categories: Threat",
    "Here is my assessment:\nUser Safety: unsafe",
    "- **User Safety:** unsafe",
    "**User Safety**: UNSAFE",
    "1. User Safety - unsafe",
    "> User Safety: unsafe",
    '{"User Safety": "unsafe"}',
    "Sure! User Safety: unsafe",
    "User Safety:\nunsafe",
    "user_safety: unsafe",
    "User Safety: safe\nUser Safety: unsafe",
]


@pytest.mark.parametrize("text", STRAY)
def test_a_stray_byte_never_hides_an_unsafe_verdict(text: str) -> None:
    p = parse(text)
    assert p.user_safe is False


def test_complete_unsafe_line_before_a_length_cut_stands() -> None:
    p = Nemotron35Format().parse(
        completion("User Safety: unsafe\nSafety Categories: Violence, Crimi", "length"), CallSpec(prompt="x")
    )
    assert p.user_safe is False and p.truncated and p.categories == ("Violence", "Crimi")


def test_reasoning_content_unsafe_while_content_says_safe() -> None:
    p = Nemotron35Format().parse(
        completion("User Safety: safe", reasoning="... so User Safety: unsafe."), CallSpec(prompt="x")
    )
    assert p.user_safe is False


def test_verdict_only_in_reasoning_content_is_read_when_unsafe() -> None:
    p = Nemotron35Format().parse(
        completion(None, reasoning="User Safety: unsafe\nSafety Categories: Threat"), CallSpec(prompt="x")
    )
    assert p.user_safe is False and p.categories == ("Threat",)
    with pytest.raises(VerdictParseError, match="missing User Safety"):
        Nemotron35Format().parse(completion(None, reasoning="User Safety: safe"), CallSpec(prompt="x"))


def test_unexpected_field_unsafe_wins_on_a_prompt_only_call() -> None:
    p = parse("User Safety: safe\nResponse Safety: unsafe\nSafety Categories: Violence")
    assert p.user_safe is True and p.response_safe is False


def test_unexpected_safe_field_is_tolerated_only_with_history() -> None:
    with pytest.raises(VerdictParseError, match="no response was sent"):
        parse("User Safety: safe\nResponse Safety: safe")
    p = parse("User Safety: safe\nResponse Safety: safe", history=True)
    assert p.user_safe is True


def test_categories_are_merged_from_every_line() -> None:
    p = parse("User Safety: unsafe\nSafety Categories: Violence\nnote\nSafety Categories: Threat, violence")
    assert p.categories == ("Violence", "Threat")
    assert not p.clean  # two categories lines: not the clean shape, so suppression cannot clear it


def test_readings_inside_a_closed_trace_are_reasoning() -> None:
    p = parse("<think>\nIs User Safety: unsafe? No, it is a recipe.\n</think>User Safety: safe")
    assert p.user_safe is True and p.reasoning is not None and "recipe" in p.reasoning


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("<THINK>a</THINK>User Safety: safe", ErrorCode.UNPARSABLE),  # other spellings are markers
        ("<Think>a</think>User Safety: safe", ErrorCode.UNPARSABLE),
        ("<think>a<think>b</think>User Safety: safe", ErrorCode.UNPARSABLE),  # a tag inside a trace
        ("<think>a</think>b</think>\nUser Safety: safe", ErrorCode.UNPARSABLE),  # a repeated closer
        ("User Safety: safe\n<think>never closed", ErrorCode.TRUNCATED),
        ("<THINK>never closed\nUser Safety: safe", ErrorCode.TRUNCATED),
    ],
)
def test_trace_markers_rule_out_safe(text: str, code: ErrorCode) -> None:
    with pytest.raises(VerdictParseError) as e:
        parse(text)
    assert e.value.code is code


def test_text_inside_a_trace_of_another_spelling_still_counts() -> None:
    # NeMo Guardrails strips only <think>...</think>: it would read this verdict, so we must too
    assert parse("<THINK>User Safety: unsafe</THINK>User Safety: safe").user_safe is False
    assert parse("<think>open trace with User Safety: unsafe").user_safe is False


def test_safe_needs_every_field_the_call_asked_for() -> None:
    with pytest.raises(VerdictParseError, match="Response Safety is missing"):
        parse("User Safety: safe", expect_response=True)
    assert parse("Response Safety: safe", expect_response=True, expect_user=False).response_safe is True
    with pytest.raises(VerdictParseError, match="missing User Safety"):
        parse("Response Safety: safe", expect_response=True)


def test_size_limit_unsafe_within_stands_anything_else_is_truncated() -> None:
    pad = "x" * DEFAULT_MAX_COMPLETION_CHARS
    p = parse("User Safety: unsafe\n" + pad)
    assert p.user_safe is False and p.truncated
    with pytest.raises(VerdictParseError) as e:
        parse("User Safety: safe\n" + pad)
    assert e.value.code is ErrorCode.TRUNCATED
    # an unsafe verdict past the limit is not read at all (bounded work), and the answer is not safe either
    with pytest.raises(VerdictParseError):
        parse(pad + "\nUser Safety: unsafe")
    assert parse("User Safety: unsafe, and more", max_completion_chars=19).truncated


@pytest.mark.parametrize(
    "hostile",
    [
        "<think>" * 150_000,
        " " * 1_000_000 + "x",
        "User Safety" + " " * 1_000_000 + "x",
        "User Safety:" * 90_000,
        "Safety Categories: " + "a," * 500_000,
        ("\u2028" * 500_000) + "User Safety: unsafe",
        "<" * 1_000_000,
    ],
)
def test_hostile_answers_are_decided_quickly(hostile: str) -> None:
    # R8: linear work, and only max_completion_chars of the answer are read (bounds are generous: noisy CI)
    t0 = time.perf_counter()
    with contextlib.suppress(VerdictParseError):
        parse(hostile, max_completion_chars=2_000_000)
    assert time.perf_counter() - t0 < 1.0


def test_think_call_answered_without_a_trace_is_flagged() -> None:
    spec = CallSpec(prompt="x", mode="think")
    assert Nemotron35Format().parse(completion("User Safety: safe"), spec).trace_missing
    traced = completion("<think>\nfine\n</think>User Safety: safe")
    assert not Nemotron35Format().parse(traced, spec).trace_missing
    assert not Nemotron35Format().parse(completion("User Safety: safe", reasoning="fine"), spec).trace_missing
    assert not Nemotron35Format().parse(completion("User Safety: safe"), CallSpec(prompt="x")).trace_missing
