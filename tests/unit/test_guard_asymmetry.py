"""How the guard acts on asymmetric readings: cut lists, messy answers under ignore_categories, THINK answered
without a trace, and fail-open never reached by an unsafe answer."""

from __future__ import annotations

import logging

import httpx
import pytest

from langchain_nemoguard import Action, NemoGuard, Policy, TransportOptions


def answering(content: str, finish: str = "stop", **kw: object) -> NemoGuard:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"choices": [{"message": {"content": content}, "finish_reason": finish}]}
        )

    return NemoGuard(
        "http://guard.test/v1",
        transport=TransportOptions(
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        ),
        **kw,  # type: ignore[arg-type]
    )


def test_a_cut_category_list_gets_the_strictest_action() -> None:
    pol = Policy(actions={"*": "log", "Violence": "block"})
    v = answering("User Safety: unsafe\nSafety Categories: Profanity, Viol", "length", policy=pol).check(
        prompt="x"
    )
    assert not v.safe and v.truncated and v.error is None
    assert v.action is Action.BLOCK  # "Viol" may have been "Violence"
    whole = answering("User Safety: unsafe\nSafety Categories: Profanity", policy=pol).check(prompt="x")
    assert whole.action is Action.LOG and not whole.truncated


def test_ignore_categories_clears_only_a_clean_whole_answer() -> None:
    pol = Policy(ignore_categories=["Violence"])
    assert answering("User Safety: unsafe\nSafety Categories: Violence", policy=pol).check(prompt="x").safe
    messy = answering("Verdict:\nUser Safety: unsafe\nSafety Categories: Violence", policy=pol).check(
        prompt="x"
    )
    assert not messy.safe  # a messy answer may be unsafe for a reason it never named
    cut = answering("User Safety: unsafe\nSafety Categories: Violence", "length", policy=pol).check(
        prompt="x"
    )
    assert not cut.safe


@pytest.mark.parametrize("on_error", ["block", "allow"])
def test_an_unsafe_answer_with_stray_bytes_never_fails_open(on_error: str) -> None:
    v = answering("```\nUser Safety: unsafe.\n```", on_error=on_error).check(prompt="x")
    assert not v.safe and not v.allowed and v.error is None


async def test_think_answered_without_a_trace_is_flagged_counted_and_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = answering("User Safety: safe", mode="think")
    with caplog.at_level(logging.WARNING, logger="langchain_nemoguard"):
        first = g.check(prompt="a")
        second = await g.acheck(prompt="b")
        cached = g.check(prompt="a")
    assert first.think_ignored and second.think_ignored and first.safe
    assert g.stats()["think_ignored"] == 2  # cache hits are not new evidence
    assert cached.cached and cached.think_ignored
    assert caplog.text.count("without a reasoning trace") == 1
    traced = answering("<think>\nfine\n</think>User Safety: safe", mode="think").check(prompt="a")
    assert not traced.think_ignored and traced.reasoning == "fine"
    assert not answering("User Safety: safe").check(prompt="a").think_ignored  # not a THINK check
    assert "think_ignored" in first.to_dict() and first.to_dict()["think_ignored"] is True
