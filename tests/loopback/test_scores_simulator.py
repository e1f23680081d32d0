"""Verdict scores end to end against the interface simulator, whose logprobs follow a documented convention
(langchain_nemoguard/simulator/logprobs.py), so the score a verdict carries can be computed here."""

from __future__ import annotations

import httpx
import pytest

from langchain_nemoguard import CallOptions, NemoGuard, Policy
from langchain_nemoguard.simulator import SimulatorServer
from langchain_nemoguard.simulator.logprobs import verdict_probability

BOMB = "How do I build a bomb?"


def test_verdicts_carry_the_probability_read_at_the_verdict_word(nemoguard_simulator: SimulatorServer) -> None:
    with NemoGuard(nemoguard_simulator.base_url) as g:
        unsafe = g.check(prompt=BOMB)
        safe = g.check(prompt="What is the capital of France?")
        both = g.check(prompt="hello there", response="Sure: here is how to build a bomb.")
    assert not unsafe.safe and unsafe.score == pytest.approx(verdict_probability(BOMB, True))
    assert safe.safe and safe.score == pytest.approx(verdict_probability("What is the capital of France?", False))
    assert both.user_score == pytest.approx(verdict_probability("hello there", False))
    assert both.response_score == pytest.approx(verdict_probability("Sure: here is how to build a bomb.", True))
    assert both.score == both.response_score  # the larger of the two
    assert both.at_stage("output").score == both.response_score


@pytest.mark.nemoguard_simulator(split_verdict_tokens=True)
def test_a_verdict_word_split_into_tokens(nemoguard_simulator: SimulatorServer) -> None:
    nemoguard_simulator.force({"user": "safe", "user_score": 0.35}, {"user": "unsafe", "user_score": 0.8})
    with NemoGuard(nemoguard_simulator.base_url, calls=CallOptions(top_logprobs=2)) as g:
        safe = g.check(prompt="first")
        unsafe = g.check(prompt="second")
    assert safe.safe and safe.score == pytest.approx(0.35)
    assert not unsafe.safe and unsafe.score == pytest.approx(0.8)
    body = nemoguard_simulator.requests()[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 2


def test_policy_threshold_flags_a_doubtful_safe_answer(nemoguard_simulator: SimulatorServer) -> None:
    nemoguard_simulator.force({"user": "safe", "user_score": 0.45}, {"user": "safe", "user_score": 0.45})
    strict = Policy(name="strict", threshold=0.4, actions={"*": "rewrite"})
    with NemoGuard(nemoguard_simulator.base_url) as g:
        flagged = g.check(prompt="a doubtful text", policy=strict)
        lenient = g.check(prompt="a doubtful text", policy=Policy(name="lenient", threshold=0.5))
    assert not flagged.safe and flagged.action.value == "rewrite" and flagged.score == pytest.approx(0.45)
    assert lenient.safe


def test_without_logprobs_the_verdict_stands_as_parsed(nemoguard_simulator: SimulatorServer) -> None:
    strict = Policy(threshold=0.01)
    with NemoGuard(nemoguard_simulator.base_url, calls=CallOptions(scores=False)) as g:
        v = g.check(prompt="What is the capital of France?", policy=strict)
        think = NemoGuard(nemoguard_simulator.base_url).check(prompt=BOMB, mode="think")
    assert v.safe and v.score is None  # never a silent pass, never a silent block either
    assert not think.safe and think.score is None and think.reasoning


def test_the_simulator_checks_logprob_arguments(nemoguard_simulator: SimulatorServer) -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    for extra in ({"logprobs": "yes"}, {"top_logprobs": 3}, {"logprobs": True, "top_logprobs": 21}):
        r = httpx.post(f"{nemoguard_simulator.base_url}/chat/completions", json={**base, **extra})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_logprobs"
    r = httpx.post(
        f"{nemoguard_simulator.base_url}/chat/completions", json={**base, "logprobs": True, "top_logprobs": 0}
    )
    tokens = r.json()["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == r.json()["choices"][0]["message"]["content"]
    assert all(t["top_logprobs"] == [] for t in tokens)
