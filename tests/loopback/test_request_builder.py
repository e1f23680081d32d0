"""The exact request JSON for each mode and policy kind, and the request-shape rules, as the interface
simulator received it."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from langchain_nemoguard import CallOptions, NemoGuard, Policy, WindowOptions
from langchain_nemoguard.core.formats import CallSpec, Nemotron35Format
from langchain_nemoguard.core.formats.nemotron35 import verdict_regex
from langchain_nemoguard.simulator import SimulatorServer


class Recorder:
    """The interface simulator's request log: the exact JSON bodies the guard sent."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.sim = sim

    @property
    def bodies(self) -> list[dict]:
        return self.sim.requests()


@pytest.fixture
def rec(nemoguard_simulator: SimulatorServer) -> Recorder:
    return Recorder(nemoguard_simulator)


def make_guard(rec: Recorder, **kw: object) -> NemoGuard:
    return NemoGuard(rec.sim.base_url, **kw)  # type: ignore[arg-type]


def png(color: tuple[int, int, int] = (0, 128, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, "PNG")
    return buf.getvalue()


def test_categories_mode_body_exact(rec: Recorder) -> None:
    make_guard(rec, model="m1").check(prompt="hello")
    assert rec.bodies == [
        {
            "model": "m1",
            "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0,
            "max_tokens": 128,
            "chat_template_kwargs": {"enable_thinking": False, "request_categories": "/categories"},
            # vLLM answers logprobs: the verdict's score is read from them (core/formats/scores.py)
            "logprobs": True,
            "top_logprobs": 5,
        }
    ]


def test_logprobs_are_asked_for_where_scores_can_be_read(rec: Recorder) -> None:
    make_guard(rec).check(prompt="a", mode="think")  # a THINK answer's logprobs would dwarf the answer
    make_guard(rec, calls=CallOptions(scores=False)).check(prompt="b")
    make_guard(rec, calls=CallOptions(top_logprobs=3)).check(prompt="c", mode="fast")
    think, off, fast = rec.bodies
    assert "logprobs" not in think and "top_logprobs" not in think
    assert "logprobs" not in off and "top_logprobs" not in off
    assert (fast["logprobs"], fast["top_logprobs"]) == (True, 3)


def test_fast_and_think_modes(rec: Recorder) -> None:
    g = make_guard(rec)
    g.check(prompt="a", mode="fast")
    g.check(prompt="b", mode="think")
    fast, think = rec.bodies
    assert fast["chat_template_kwargs"] == {"enable_thinking": False, "request_categories": "/no_categories"}
    assert fast["max_tokens"] == 32
    assert think["chat_template_kwargs"] == {"enable_thinking": True, "request_categories": "/categories"}
    assert think["max_tokens"] >= 512  # room for the trace to close


def test_no_system_message_and_roles_alternate_from_user(rec: Recorder) -> None:
    g = make_guard(rec)
    g.check(
        messages=[
            {"role": "system", "content": "You are helpful"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
        ]
    )
    msgs = rec.bodies[0]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert all(m["role"] != "system" for m in msgs)


def test_assistant_turn_only_for_response_checks(rec: Recorder) -> None:
    g = make_guard(rec)
    g.check(prompt="q")
    g.check(prompt="q", response="r")
    assert [m["role"] for m in rec.bodies[0]["messages"]] == ["user"]
    assert rec.bodies[1]["messages"][1] == {"role": "assistant", "content": "r"}


def test_image_part_before_text_and_one_image_per_call(rec: Recorder) -> None:
    g = make_guard(rec)
    v = g.check(prompt="what is this?", images=[png((1, 2, 3)), png((4, 5, 6))])
    assert v.calls == 2 and len(rec.bodies) == 2
    for body in rec.bodies:
        parts = body["messages"][0]["content"]
        assert [p["type"] for p in parts] == ["image_url", "text"]
        assert parts[0]["image_url"]["url"].startswith("data:image/")
        assert parts[1]["text"] == "what is this?"
    assert rec.bodies[0]["messages"][0]["content"][0] != rec.bodies[1]["messages"][0]["content"][0]


def test_never_an_image_without_text(rec: Recorder) -> None:
    make_guard(rec).check(images=png())
    parts = rec.bodies[0]["messages"][0]["content"]
    assert parts[1]["type"] == "text" and parts[1]["text"].strip()


def test_custom_policy_rendered_in_documented_format(rec: Recorder) -> None:
    pol = Policy(
        name="kids", description="A tutor for children", disallowed=["violence"], allowed=["history"]
    )
    make_guard(rec, policy=pol).check(prompt="x")
    kwargs = rec.bodies[0]["chat_template_kwargs"]
    assert "custom_taxonomy" not in kwargs
    assert kwargs["custom_policy"] == (
        "Evaluate the user prompt for compliance with the given policy ignoring any previous policies you know about.\n"
        "\n### Policy\nName: kids\nDescription: A tutor for children\n"
        "\nDisallowed Behaviors:\n- violence\n"
        "\nAllowed Behaviors:\n- history"
    )


def test_custom_policy_think_sentence(rec: Recorder) -> None:
    pol = Policy(name="p", disallowed=["x"])
    make_guard(rec, policy=pol, mode="think").check(prompt="x")
    assert (
        "First, think through your reasoning step-by-step."
        in rec.bodies[0]["chat_template_kwargs"]["custom_policy"]
    )


def test_custom_taxonomy_with_allow_list(rec: Recorder) -> None:
    pol = Policy(
        taxonomy=["Trade Secret Leak: unreleased source code, internal pricing"], allowed=["public docs"]
    )
    make_guard(rec, policy=pol).check(prompt="x")
    kwargs = rec.bodies[0]["chat_template_kwargs"]
    assert "custom_policy" not in kwargs
    assert kwargs["custom_taxonomy"] == (
        "- Trade Secret Leak (unreleased source code, internal pricing)\n\n"
        "Allow-list (explicitly permitted even if adjacent to a category above):\n- public docs"
    )


def test_builtin_plus_custom_runs_two_calls(rec: Recorder) -> None:
    pol = Policy(name="p", disallowed=["x"], include_builtin=True)
    v = make_guard(rec, policy=pol).check(prompt="x")
    assert v.calls == 2
    kinds = sorted("custom_policy" in b["chat_template_kwargs"] for b in rec.bodies)
    assert kinds == [False, True]


def test_constrain_output_regex(rec: Recorder) -> None:
    make_guard(rec, calls=CallOptions(constrain_output=True)).check(prompt="x", response="y")
    regex = rec.bodies[0]["structured_outputs"]["regex"]
    assert re.fullmatch(
        regex, "User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence, Threat"
    )
    assert re.fullmatch(regex, "User Safety: safe\nResponse Safety: safe")
    assert not re.fullmatch(regex, "User Safety: safe")


def test_constrain_output_think_regex_closes_trace() -> None:
    regex = verdict_regex(CallSpec(prompt="x", mode="think", categories=False))
    assert re.fullmatch(regex, "<think>\nfine\n</think>User Safety: safe")
    assert not re.fullmatch(regex, "<think>\nfine")


def test_constrain_output_refused_for_hosted_providers() -> None:
    from langchain_nemoguard.core import ConfigurationError

    with pytest.raises(ConfigurationError, match="structured_outputs"):
        NemoGuard(provider="nvidia", api_key="k", calls=CallOptions(constrain_output=True))


def test_builder_refuses_empty_text() -> None:
    with pytest.raises(ValueError, match="needs user text"):
        Nemotron35Format().build(CallSpec(prompt="  "), "m")


def test_context_turns_alternate_and_end_on_assistant(rec: Recorder) -> None:
    g = make_guard(rec, windows=WindowOptions(context_turns=4))
    g.check(
        messages=[
            {"role": "assistant", "content": "greeting"},
            {"role": "user", "content": "u1"},
            {"role": "user", "content": "u1b"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "now"},
        ]
    )
    roles = [m["role"] for m in rec.bodies[0]["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert rec.bodies[0]["messages"][0]["content"] == "u1\nu1b"
