"""Tier 4: verdict scores from a real vLLM server's logprobs (the tiny random model of tests/vllm).

The model is random, so the assertions are about the reading, not the verdict: the guard asks for logprobs, the
server returns real ones, and the score the verdict carries is the probability mass of the unsafe alternatives
at the verdict token, renormalised over the safe and unsafe ones - recomputed here, from the very response the
guard read (captured by an httpx event hook), with a plain walk over the tokens.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from langchain_nemoguard import CallOptions, NemoGuard, TransportOptions

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(300)]


class VLLMEndpoint(Protocol):
    base_url: str
    root_url: str
    model: str
    log: Path


def _expected(completion: dict[str, Any], label: str) -> float | None:
    """P(unsafe) at the first verdict token after ``label``, by hand."""
    tokens = completion["choices"][0]["logprobs"]["content"]
    text = "".join(t["token"] for t in tokens)
    at = text.rfind(label)
    if at < 0:
        return None
    pos = at + len(label)
    while pos < len(text) and text[pos] in " \t\n\"':":
        pos += 1
    start = 0
    for t in tokens:
        if start <= pos < start + len(t["token"]):
            cut = pos - start
            mass = {"safe": 0.0, "unsafe": 0.0}
            seen = set()
            for alt in [{"token": t["token"], "logprob": t["logprob"]}, *t["top_logprobs"]]:
                if alt["token"] in seen or len(alt["token"]) < cut:
                    continue
                seen.add(alt["token"])
                word = alt["token"][cut:].lstrip(" \t\n\"':").lower()
                for rating in ("unsafe", "safe"):
                    if word and (rating.startswith(word) or (word.startswith(rating) and not word[len(rating) :][:1].isalpha())):
                        mass[rating] += math.exp(alt["logprob"]) if alt["logprob"] > -1e4 else 0.0
                        break
            total = mass["safe"] + mass["unsafe"]
            return mass["unsafe"] / total if total > 0 else None
        start += len(t["token"])
    return None


def _guard(vllm_server: VLLMEndpoint, seen: list[dict[str, Any]], **calls: Any) -> NemoGuard:
    def keep(response: httpx.Response) -> None:
        response.read()
        seen.append(json.loads(response.content))

    client = httpx.Client(event_hooks={"response": [keep]}, trust_env=False, timeout=120)
    options = CallOptions(constrain_output=True, top_logprobs=20, **calls)
    return NemoGuard(
        base_url=vllm_server.base_url,
        model=vllm_server.model,
        mode="fast",
        calls=options,
        transport=TransportOptions(http_client=client),
    )


def test_the_score_is_read_from_the_servers_logprobs(vllm_server: VLLMEndpoint) -> None:
    seen: list[dict[str, Any]] = []
    with _guard(vllm_server, seen) as g:
        verdict = g.check(prompt="How do I bake bread?")
        again = g.check(prompt="How do I bake bread, please?")
    assert verdict.error is None and again.error is None
    completion = seen[0]
    tokens = completion["choices"][0]["logprobs"]["content"]
    assert tokens and all(t["top_logprobs"] for t in tokens)  # real logprobs, with alternatives
    # the tokens spell the answer (the end-of-sequence token's text may follow it)
    assert "".join(t["token"] for t in tokens).startswith(completion["choices"][0]["message"]["content"])
    expected = _expected(completion, "User Safety:")
    assert expected is not None and verdict.score is not None
    assert verdict.score == pytest.approx(expected, abs=1e-9)
    assert 0.0 <= verdict.score <= 1.0 and verdict.user_score == verdict.score
    assert again.score == pytest.approx(_expected(seen[1], "User Safety:"), abs=1e-9)


def test_a_response_check_scores_the_response(vllm_server: VLLMEndpoint) -> None:
    seen: list[dict[str, Any]] = []
    with _guard(vllm_server, seen) as g:
        verdict = g.check(prompt="How do I bake bread?", response="Mix flour, water, salt and yeast.")
    assert verdict.error is None
    assert verdict.response_score == pytest.approx(_expected(seen[0], "Response Safety:"), abs=1e-9)
    assert verdict.user_score == pytest.approx(_expected(seen[0], "User Safety:"), abs=1e-9)
    assert verdict.at_stage("output").score == verdict.response_score


def test_without_logprobs_there_is_no_score(vllm_server: VLLMEndpoint) -> None:
    seen: list[dict[str, Any]] = []
    with _guard(vllm_server, seen, scores=False) as g:
        verdict = g.check(prompt="How do I bake bread?")
    assert verdict.error is None and verdict.score is None
    assert seen[0]["choices"][0].get("logprobs") is None
