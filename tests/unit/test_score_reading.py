"""Verdict scores from logprobs (core/formats/scores.py) and how one check's calls combine them (core/combine.py).

The completions here are written by hand in the shapes tokenisers produce: a verdict word with its leading
space, without it, with the colon, split into pieces, in a JSON answer; top_logprobs with and without the chosen
token, with filler alternatives that must not count.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from langchain_nemoguard import Policy
from langchain_nemoguard.core.combine import combine
from langchain_nemoguard.core.errors import GuardTimeoutError
from langchain_nemoguard.core.formats import CallSpec, NemoGuard8BFormat, Nemotron35Format, ParsedCall
from langchain_nemoguard.core.formats.scores import (
    NEMOTRON_LABELS,
    classify,
    completion_logprobs,
    field_score,
)
from langchain_nemoguard.core.plan import Plan


def tok(text: str, p: float = 1.0, *alts: tuple[str, float]) -> dict[str, Any]:
    """One logprobs entry: the chosen token with probability ``p`` and (token, probability) alternatives."""
    top = [{"token": t, "logprob": math.log(q) if q > 0 else -9999.0} for t, q in alts]
    return {"token": text, "logprob": math.log(p), "top_logprobs": top}


def completion(content: str, tokens: list[dict[str, Any]] | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if tokens is not None:
        choice["logprobs"] = {"content": tokens}
    return {"choices": [choice]}


def text_of(tokens: list[dict[str, Any]]) -> str:
    return "".join(t["token"] for t in tokens)


def parse(tokens: list[dict[str, Any]], response: str | None = None) -> ParsedCall:
    return Nemotron35Format().parse(completion(text_of(tokens), tokens), CallSpec(prompt="x", response=response))


def test_leading_space_token_renormalised_over_safe_and_unsafe() -> None:
    tokens = [
        tok("User"),
        tok(" Safety"),
        tok(":"),
        tok(" unsafe", 0.72, (" unsafe", 0.72), (" safe", 0.18), ("\n", 0.10)),
    ]
    call = parse(tokens)
    assert call.user_safe is False
    assert call.user_score == pytest.approx(0.72 / 0.90)  # the newline is no verdict: left out


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        # no space: the colon and the space in their own tokens
        ([tok("User Safety"), tok(":"), tok(" "), tok("safe", 0.8, ("safe", 0.8), ("unsafe", 0.2))], 0.2),
        # the colon inside the verdict token
        ([tok("User Safety"), tok(": safe", 0.6, (": safe", 0.6), (": unsafe", 0.3), (": Unsafe", 0.1))], 0.4),
        # capitalised alternatives count for their word
        ([tok("User Safety:"), tok(" safe", 0.7, (" safe", 0.7), (" Unsafe", 0.2), (" UNSAFE", 0.1))], 0.3),
        # the chosen token missing from top_logprobs still counts
        ([tok("User Safety:"), tok(" safe", 0.5, (" unsafe", 0.25), ("...", 0.25))], 1 / 3),
    ],
)
def test_tokenisations_of_the_verdict_word(tokens: list[dict[str, Any]], expected: float) -> None:
    assert parse(tokens).user_score == pytest.approx(expected)


def test_a_split_verdict_word_is_decided_at_its_first_piece() -> None:
    tokens = [
        tok("User Safety:"),
        tok(" un", 0.55, (" un", 0.55), (" s", 0.35), (" safe", 0.05), (" the", 0.05)),
        tok("safe"),
    ]
    assert parse(tokens).user_score == pytest.approx(0.55 / 0.95)


def test_the_label_inside_the_verdict_token_is_matched_by_prefix() -> None:
    tokens = [tok("User"), tok(" Safety: unsafe", 0.9, (" Safety: unsafe", 0.9), (" Safety: safe", 0.1))]
    assert parse(tokens).user_score == pytest.approx(0.9)


def test_response_field_and_last_label_after_a_trace() -> None:
    tokens = [
        tok("<think>\nthe user says User Safety: safe is fine\n</think>"),  # a trace quoting the label
        tok("User Safety:"),
        tok(" safe", 0.9, (" safe", 0.9), (" unsafe", 0.1)),
        tok("\nResponse Safety:"),
        tok(" unsafe", 0.6, (" unsafe", 0.6), (" safe", 0.4)),
    ]
    call = parse(tokens, response="r")
    assert (call.user_safe, call.response_safe) == (True, False)
    assert call.user_score == pytest.approx(0.1)
    assert call.response_score == pytest.approx(0.6)


def test_json_answers_of_the_8b_format() -> None:
    tokens = [
        tok('{"User Safety": "'),
        tok("unsafe", 0.8, ("unsafe", 0.8), ("safe", 0.2)),
        tok('", "Safety Categories": "Violence"}'),
    ]
    spec = CallSpec(prompt="x")
    call = NemoGuard8BFormat().parse(completion(text_of(tokens), tokens), spec)
    assert call.user_safe is False and call.user_score == pytest.approx(0.8)


def test_no_score_when_it_cannot_be_read() -> None:
    good = [tok("User Safety:"), tok(" safe", 0.9, (" safe", 0.9), (" unsafe", 0.1))]
    # no logprobs at all
    assert Nemotron35Format().parse(completion(text_of(good), None), CallSpec(prompt="x")).user_score is None
    # logprobs not in the OpenAI shape
    bad = completion(text_of(good), good)
    bad["choices"][0]["logprobs"] = {"content": [{"token": 3}]}
    assert Nemotron35Format().parse(bad, CallSpec(prompt="x")).user_score is None
    # the chosen token says something else than the parsed answer (the logprobs belong to another text)
    other = completion(text_of(good), [tok("User Safety:"), tok(" unsafe", 0.9, (" unsafe", 0.9))])
    assert Nemotron35Format().parse(other, CallSpec(prompt="x")).user_score is None
    # only filler alternatives at the verdict position
    assert field_score(completion_logprobs(completion("", [tok("User Safety:"), tok(" ok")])) or [], NEMOTRON_LABELS.user) is None


def test_a_missing_score_never_changes_the_verdict() -> None:
    text = "User Safety: unsafe\nSafety Categories: Violence"
    call = Nemotron35Format().parse(completion(text, None), CallSpec(prompt="x"))
    assert call.user_safe is False and call.categories == ("Violence",) and call.user_score is None


@pytest.mark.parametrize(
    ("token", "prefix", "rating"),
    [
        (" unsafe", "", "unsafe"),
        ("unsafe\n", "", "unsafe"),
        (" un", "", "unsafe"),
        ("u", "", "unsafe"),
        (" s", "", "safe"),
        ('"safe', '"', "safe"),
        (" safety", "", None),  # a word that only starts with "safe" is no verdict
        (" unsure", "", None),
        ("\n", "", None),
        (" Safety: safe", " Safety: ", "safe"),
        (" Other: safe", " Safety: ", None),
    ],
)
def test_classify(token: str, prefix: str, rating: str | None) -> None:
    assert classify(token, prefix) == rating


# --- combining the calls of one check ------------------------------------------------------------------------


def _plan(*specs: CallSpec, policy: Policy | None = None) -> Plan:
    return Plan(tuple(specs), policy or Policy(), "categories")


def _call(user: bool, score: float | None, response: bool | None = None, rscore: float | None = None,
          categories: tuple[str, ...] = ()) -> ParsedCall:
    return ParsedCall(user, response, categories, None, "raw", user_score=score, response_score=rscore)


def _combine(plan: Plan, results: list[Any]) -> Any:
    return combine(plan, results, model="m", on_error="block", latency_ms=1.0)


def test_the_score_of_a_check_is_the_largest_over_its_calls() -> None:
    plan = _plan(CallSpec(prompt="a"), CallSpec(prompt="b"), CallSpec(prompt="a", response="r"))
    v = _combine(plan, [_call(True, 0.1), _call(True, 0.3), _call(True, 0.2, True, 0.05)])
    assert v.safe and v.user_score == pytest.approx(0.3) and v.response_score == pytest.approx(0.05)
    assert v.score == pytest.approx(0.3)
    assert v.at_stage("output").score == pytest.approx(0.05)  # only the response decides there


def test_one_call_without_a_score_leaves_the_field_unknown() -> None:
    plan = _plan(CallSpec(prompt="a"), CallSpec(prompt="b"))
    assert _combine(plan, [_call(True, 0.1), _call(True, None)]).score is None
    failed = _combine(plan, [_call(False, 0.9, categories=("Violence",)), GuardTimeoutError("slow")])
    assert not failed.safe and failed.error is None and failed.score is None


def test_a_suppressed_reading_has_no_score() -> None:
    policy = Policy(ignore_categories=["Profanity"])
    v = _combine(_plan(CallSpec(prompt="a"), policy=policy), [_call(False, 0.97, categories=("Profanity",))])
    assert v.safe and v.score is None  # 0.97 is not the probability of unsafe under this policy


def test_threshold_flags_a_safe_rating_whose_score_reaches_it() -> None:
    policy = Policy(threshold=0.3, actions={"*": "rewrite"})
    flagged = _combine(_plan(CallSpec(prompt="a"), policy=policy), [_call(True, 0.35)])
    assert not flagged.safe and flagged.user_safe is False and flagged.action.value == "rewrite"
    below = _combine(_plan(CallSpec(prompt="a"), policy=policy), [_call(True, 0.29)])
    assert below.safe
    unknown = _combine(_plan(CallSpec(prompt="a"), policy=policy), [_call(True, None)])
    assert unknown.safe  # no score: the verdict stands as parsed
    response = _combine(
        _plan(CallSpec(prompt="a", response="r"), policy=policy), [_call(True, 0.01, True, 0.5)]
    )
    assert response.user_safe is True and response.response_safe is False


def test_threshold_never_clears_an_explicit_unsafe() -> None:
    policy = Policy(threshold=1.0)
    v = _combine(_plan(CallSpec(prompt="a"), policy=policy), [_call(False, 0.6, categories=("Violence",))])
    assert not v.safe and v.categories == ("Violence",)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_threshold_must_be_a_probability(bad: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        Policy(threshold=bad)


def test_threshold_is_part_of_the_fingerprint() -> None:
    assert Policy(threshold=0.4).fingerprint != Policy(threshold=0.5).fingerprint != Policy().fingerprint


def test_eval_rows_take_the_score_of_the_judged_field() -> None:
    from langchain_nemoguard.workbench.results import target_score

    v = _combine(_plan(CallSpec(prompt="a", response="r")), [_call(True, 0.7, True, 0.2)])
    assert target_score(v, "response") == pytest.approx(0.2)  # not the prompt's 0.7, which is only context
    assert target_score(v, "prompt") == pytest.approx(0.7)
