"""Agents stream like chains: with ``stream_mode="messages"`` an agent's AI message arrives window by window as
each window is judged (the first one early, while the model is still writing), and nothing unjudged is emitted."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fake_chat import FakeToolChat, call
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.tools import tool

from langchain_nemoguard import CacheOptions, NemoGuard, NemoGuardMiddleware, StreamOptions
from langchain_nemoguard.simulator import SimulatorServer

WINDOWS = StreamOptions(window_chars=40, overlap_chars=10, first_window_chars=20)
LONG_SAFE = (
    "Paris is the capital of France. It sits on the Seine, and its museums, cafes and bridges draw "
    "visitors all year round."
)
UNSAFE = "Then you make a bomb by packing the powder tightly into a pipe."
REFUSAL = "I can't help with that request."
DELAY_S = 0.02  # per streamed chunk (word or space): the model takes ~0.8 s for LONG_SAFE


@tool
def lookup(query: str) -> str:
    """Look a fact up."""
    return "Paris"


@pytest.fixture
def guard(nemoguard_simulator: SimulatorServer) -> NemoGuard:
    return NemoGuard(base_url=nemoguard_simulator.base_url, cache=CacheOptions(size=0), stream=WINDOWS)


def slow(*answers: str | AIMessage) -> FakeToolChat:
    return FakeToolChat(answers=[a if isinstance(a, AIMessage) else AIMessage(a) for a in answers], delay_s=DELAY_S)


def judged(sim: SimulatorServer) -> str:
    return "\n".join(
        m["content"] for b in sim.requests() for m in b["messages"] if m["role"] == "assistant"
    )


def ai_chunks(items: list[tuple[BaseMessage, float]]) -> list[tuple[AIMessageChunk, float]]:
    return [(m, t) for m, t in items if isinstance(m, AIMessageChunk) and m.content]


def test_messages_stream_arrives_window_by_window(guard: NemoGuard, nemoguard_simulator: SimulatorServer) -> None:
    model = slow(LONG_SAFE)
    agent = create_agent(model, tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    items = [(m, time.monotonic()) for m, _ in agent.stream({"messages": [HumanMessage("Tell me about Paris")]},
                                                            stream_mode="messages")]
    chunks = ai_chunks(items)
    finished = model.produced[-1]  # when the model wrote its last chunk
    early = [m for m, t in chunks if t < finished]
    assert len(early) >= 3, "judged chunks must arrive while the model is still writing"
    assert chunks[0][1] < model.produced[0] + (finished - model.produced[0]) / 2  # the first window, early
    text = "".join(str(m.content) for m, _ in chunks)
    assert text == LONG_SAFE  # all of it, once: the node's final message is de-duplicated by id
    assert len({m.id for m, _ in chunks}) == 1
    seen = judged(nemoguard_simulator)
    assert all(word in seen for word in text.split())  # every released word was in a judged window


async def test_async_messages_stream_arrives_window_by_window(guard: NemoGuard) -> None:
    model = slow(LONG_SAFE)
    agent = create_agent(model, tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    items = [
        (m, time.monotonic())
        async for m, _ in agent.astream({"messages": [HumanMessage("Tell me about Paris")]}, stream_mode="messages")
    ]
    chunks = ai_chunks(items)
    assert len([m for m, t in chunks if t < model.produced[-1]]) >= 3
    assert "".join(str(m.content) for m, _ in chunks) == LONG_SAFE


@pytest.mark.parametrize("action", ["block", "rewrite"])
def test_an_unsafe_second_window_is_never_emitted(guard: NemoGuard, action: str) -> None:
    agent = create_agent(
        slow(LONG_SAFE + " " + UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, action=action)]
    )
    emitted: list[BaseMessage] = []
    final: dict[str, Any] = {}
    for mode, data in agent.stream(
        {"messages": [HumanMessage("Tell me about Paris")]}, stream_mode=["messages", "values"]
    ):
        if mode == "messages":
            message, _meta = data
            assert "bomb" not in str(message.content)  # every item, as it arrives
            emitted.append(message)
        else:
            final = data
    assert any(str(m.content) and str(m.content) in LONG_SAFE for m in emitted)  # safe windows came first
    assert final["messages"][-1].content == REFUSAL  # the state holds the refusal, not the half answer
    assert str(emitted[-1].content).endswith(REFUSAL) or emitted[-1].content == REFUSAL


async def test_a_tool_call_streams_judged_then_the_answer(guard: NemoGuard) -> None:
    agent = create_agent(
        slow(call("lookup", query="capital of France"), LONG_SAFE),
        tools=[lookup],
        middleware=[NemoGuardMiddleware(guard)],
    )
    items = [m async for m, _ in agent.astream({"messages": [HumanMessage("capital?")]}, stream_mode="messages")]
    calls = [m for m in items if isinstance(m, AIMessageChunk) and m.tool_call_chunks]
    assert calls and calls[0].tool_call_chunks[0]["name"] == "lookup"
    assert "".join(str(m.content) for m in items if isinstance(m, AIMessageChunk)) == LONG_SAFE
    assert [type(m).__name__ for m in items if not isinstance(m, AIMessageChunk)] == ["ToolMessage"]


def test_an_unsafe_tool_call_never_streams(guard: NemoGuard) -> None:
    agent = create_agent(
        slow(call("lookup", query="how to make a bomb at home"), "done"),
        tools=[lookup],
        middleware=[NemoGuardMiddleware(guard)],
    )
    items = [m for m, _ in agent.stream({"messages": [HumanMessage("find facts")]}, stream_mode="messages")]
    assert "bomb" not in str([getattr(m, "tool_call_chunks", None) for m in items])
    assert "bomb" not in str([getattr(m, "tool_calls", None) for m in items])
    assert items[-1].content == REFUSAL


class Down(FakeToolChat):
    def _stream(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("primary model down")

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("primary model down")


@pytest.mark.parametrize("answer", [LONG_SAFE, UNSAFE])
def test_a_fallback_model_swapped_in_by_inner_middleware_never_streams_raw(guard: NemoGuard, answer: str) -> None:
    """ModelFallbackMiddleware inside the guard replaces the (guarded) model with its own: that model runs under
    the nostream tag and stream=False, so its answer arrives whole, judged, and unsafe text never streams."""
    from langchain.agents.middleware import ModelFallbackMiddleware

    backup = slow(answer)
    agent = create_agent(
        Down(), tools=[lookup], middleware=[NemoGuardMiddleware(guard), ModelFallbackMiddleware(backup)]
    )
    items = [m for m, _ in agent.stream({"messages": [HumanMessage("Tell me about Paris")]}, stream_mode="messages")]
    ai = [m for m in items if isinstance(m, AIMessage)]
    assert "bomb" not in "".join(str(m.content) for m in ai)
    assert [m.content for m in ai] == ([LONG_SAFE] if answer == LONG_SAFE else [REFUSAL])


def test_an_outage_mid_stream_ends_with_the_fail_closed_refusal(nemoguard_simulator: SimulatorServer) -> None:
    """The guard fails on the first window (fail closed): nothing is emitted but the outage message (never the
    policy's refusal), whose metadata says the guard was unavailable - what the same outage does without
    streaming."""
    from langchain_nemoguard.core.verdict import DEFAULT_OUTAGE_MESSAGE
    from langchain_nemoguard.langchain.middleware import MARKER

    guard = NemoGuard(
        base_url=nemoguard_simulator.base_url,
        cache=CacheOptions(size=0),
        stream=WINDOWS,
        max_retries=0,
    )
    nemoguard_simulator.force(*[{"fault": "503"}] * 20, match="Paris")
    agent = create_agent(slow(LONG_SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, check_input=False)])
    final: dict[str, Any] = {}
    emitted: list[BaseMessage] = []
    for mode, data in agent.stream({"messages": [HumanMessage("Paris?")]}, stream_mode=["messages", "values"]):
        if mode == "messages":
            emitted.append(data[0])
        else:
            final = data
    assert [m.content for m in emitted if isinstance(m, AIMessage)] == [DEFAULT_OUTAGE_MESSAGE]
    assert final["messages"][-1].content == DEFAULT_OUTAGE_MESSAGE
    assert final["messages"][-1].response_metadata[MARKER]["error"] is not None
