"""``guard.wrap(chat_model)`` is a chat model (``GuardedChatModel``), judged on every path, against the simulator."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from fake_chat import FakeToolChat, call
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.tools import tool

from langchain_nemoguard import CacheOptions, ContentBlockedError, GuardedRunnable, NemoGuard, StreamOptions
from langchain_nemoguard.langchain.chat_model import GuardedChatModel
from langchain_nemoguard.simulator import SimulatorServer

SAFE = "Paris is the capital of France and a lovely city to visit in spring."
UNSAFE = "Then you make a bomb by packing the powder tightly into a pipe."
REFUSAL = "I can't help with that request."
SMALL = StreamOptions(window_chars=40, overlap_chars=10, first_window_chars=20)


@pytest.fixture
def guard(nemoguard_simulator: SimulatorServer) -> NemoGuard:
    return NemoGuard(base_url=nemoguard_simulator.base_url, cache=CacheOptions(size=0))


def fake(*answers: str | AIMessage, **kw: Any) -> FakeToolChat:
    return FakeToolChat(answers=[a if isinstance(a, AIMessage) else AIMessage(a) for a in answers], **kw)


def judged_responses(sim: SimulatorServer) -> list[str]:
    """The assistant texts the simulator was asked to judge."""
    out = []
    for body in sim.requests():
        out.extend(m["content"] for m in body["messages"] if m["role"] == "assistant" and isinstance(m["content"], str))
    return out


# --- a chat model, with the chat model surface ----------------------------------------------------------------------


def test_wrap_of_a_chat_model_is_a_chat_model_that_delegates(guard: NemoGuard) -> None:
    inner = fake(SAFE, temperature=0.3, profile={"max_input_tokens": 1000, "tool_calling": True})
    guarded = guard.wrap(inner)
    assert isinstance(guarded, GuardedChatModel) and isinstance(guarded, BaseChatModel)
    assert guarded.profile == inner.profile
    assert guarded._llm_type == "fake-tool-chat"
    assert guarded._get_ls_params(model="other") == inner._get_ls_params(model="other")
    assert guarded._get_ls_params()["ls_temperature"] == 0.3
    assert guarded.model_name == "fake-tool-chat"
    assert guarded.invoke("capital?").content == SAFE


def test_unknown_settings_are_refused(guard: NemoGuard) -> None:
    with pytest.raises(TypeError):
        guard.wrap(fake(SAFE), polcy="kids")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        guard.wrap(fake(SAFE), input_key="question")  # a chat model's input is messages
    with pytest.raises(pydantic.ValidationError):
        GuardedRunnable(guard=guard, inner=fake(SAFE), parralel=True)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        GuardedChatModel(guard=guard, inner=fake(SAFE), temperature=0)  # type: ignore[call-arg]


def test_input_and_output_are_judged(guard: NemoGuard, nemoguard_simulator: SimulatorServer) -> None:
    with pytest.raises(ContentBlockedError) as info:
        guard.wrap(fake(SAFE)).invoke("how do I make a bomb?")
    assert info.value.stage.value == "input"
    inner = fake(UNSAFE)
    with pytest.raises(ContentBlockedError) as info:
        guard.wrap(inner).invoke("tell me a story")
    assert info.value.stage.value == "output"
    rewritten = guard.wrap(fake(UNSAFE), action="rewrite").invoke("tell me a story")
    assert isinstance(rewritten, AIMessage) and rewritten.content == REFUSAL


async def test_async_invoke_is_judged(guard: NemoGuard) -> None:
    assert (await guard.wrap(fake(SAFE)).ainvoke("capital?")).content == SAFE
    with pytest.raises(ContentBlockedError):
        await guard.wrap(fake(UNSAFE)).ainvoke("a story")


# --- streams ------------------------------------------------------------------------------------------------------


def test_stream_releases_only_judged_windows(guard: NemoGuard, nemoguard_simulator: SimulatorServer) -> None:
    guarded = guard.wrap(fake(SAFE + " " + UNSAFE), stream=SMALL, action="rewrite")
    chunks = list(guarded.stream("a story"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    released = "".join(str(c.content) for c in chunks[:-1])
    assert released and SAFE.startswith(released.strip()[:20])
    assert "bomb" not in released
    assert chunks[-1].content == "\n\n" + REFUSAL  # a new paragraph after released text
    judged = "".join(judged_responses(nemoguard_simulator))
    for word in released.split():
        assert word in judged  # every released word was in a judged window


async def test_astream_and_events_v2_carry_no_unjudged_token(guard: NemoGuard) -> None:
    guarded = guard.wrap(fake(SAFE + " " + UNSAFE), stream=SMALL, action="rewrite")
    chunks = [c async for c in guarded.astream("a story")]
    assert chunks[-1].content == "\n\n" + REFUSAL and "bomb" not in "".join(str(c.content) for c in chunks)
    events = [e async for e in guard.wrap(fake(UNSAFE), stream=SMALL, action="rewrite").astream_events(
        "a story", version="v2"
    )]
    model_runs = {e["name"] for e in events if e["event"].startswith("on_chat_model")}
    assert model_runs == {"GuardedChatModel"}  # the inner model's run is hidden from stream consumers
    streamed = [str(e["data"]["chunk"].content) for e in events if e["event"] == "on_chat_model_stream"]
    assert streamed[-1] == REFUSAL and "bomb" not in "".join(streamed)
    assert any(e["event"] == "on_custom_event" and e["name"] == "nemoguard_verdict" for e in events)


def test_stream_events_v3_streams_judged_text(guard: NemoGuard) -> None:
    guarded = guard.wrap(fake(SAFE + " " + UNSAFE), stream=SMALL, action="rewrite")
    stream = guarded.stream_events("a story", version="v3")
    text = "".join(stream.text)
    assert "bomb" not in text
    assert text.endswith(REFUSAL)


# --- tools and structured output --------------------------------------------------------------------------------


@tool
def lookup(query: str) -> str:
    """Look a fact up."""
    return "Paris"


def test_bind_tools_stays_guarded_and_forwards_the_tools(guard: NemoGuard) -> None:
    inner = fake(call("lookup", query="how to make a bomb at home"))
    bound = guard.wrap(inner).bind_tools([lookup], tool_choice="any")
    assert isinstance(bound, RunnableBinding) and isinstance(bound.bound, GuardedChatModel)
    with pytest.raises(ContentBlockedError) as info:
        bound.invoke("find me facts")
    assert info.value.stage.value == "tool_call"
    assert inner.calls[-1]["tools"][0]["function"]["name"] == "lookup"
    assert inner.calls[-1]["tool_choice"] == "any"
    safe = guard.wrap(fake(call("lookup", query="capital of France"))).bind_tools([lookup])
    assert safe.invoke("capital?").tool_calls[0]["args"] == {"query": "capital of France"}


def test_streamed_tool_call_arguments_are_judged(guard: NemoGuard) -> None:
    bound = guard.wrap(fake(call("lookup", query="how to make a bomb at home"))).bind_tools([lookup])
    released: list[Any] = []

    def drain() -> None:
        for chunk in bound.stream("find me facts"):
            released.append(chunk)

    with pytest.raises(ContentBlockedError):
        drain()
    assert "bomb" not in json.dumps([c.tool_call_chunks for c in released])


class Answer(pydantic.BaseModel):
    """An answer."""

    answer: str
    notes: str


def test_structured_output_is_judged_whole(guard: NemoGuard, nemoguard_simulator: SimulatorServer) -> None:
    ok = fake(call("Answer", answer="Paris", notes="capital of France"))
    got = guard.wrap(ok).with_structured_output(Answer).invoke("capital?")
    assert got == Answer(answer="Paris", notes="capital of France")
    assert any('"notes": "capital of France"' in r for r in judged_responses(nemoguard_simulator))
    bad = fake(call("Answer", answer="Paris", notes="then you make a bomb by packing it tightly"))
    with pytest.raises(ContentBlockedError):
        guard.wrap(bad).with_structured_output(Answer).invoke("capital?")
    with pytest.raises(ContentBlockedError):  # a field other than the "answer" key is judged too
        list(guard.wrap(bad).with_structured_output(Answer, include_raw=True).stream("capital?"))


def test_structured_output_with_raw_judges_the_raw_reasoning(guard: NemoGuard) -> None:
    """With ``include_raw=True`` the caller gets the raw message, reasoning and all: it is judged as the coverage
    rule says (``check_reasoning``), not only the parsed value."""
    thought = AIMessage(
        content=[{"type": "reasoning", "reasoning": "They want to make a bomb by packing it tightly."}],
        tool_calls=[{"name": "Answer", "args": {"answer": "Paris", "notes": "capital"}, "id": "c1"}],
    )
    with pytest.raises(ContentBlockedError):
        guard.wrap(fake(thought)).with_structured_output(Answer, include_raw=True).invoke("capital?")
    got = guard.wrap(fake(thought)).with_structured_output(Answer).invoke("capital?")  # the value alone: safe
    assert got == Answer(answer="Paris", notes="capital")


# --- agents -------------------------------------------------------------------------------------------------------


def test_create_agent_with_a_guarded_model_and_tools(guard: NemoGuard) -> None:
    inner = fake(call("lookup", query="capital of France"), "The capital is Paris.")
    agent = create_agent(model=guard.wrap(inner), tools=[lookup])
    out = agent.invoke({"messages": [HumanMessage("What is the capital of France?")]})
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert isinstance(out["messages"][2], ToolMessage) and out["messages"][2].content == "Paris"
    assert out["messages"][-1].content == "The capital is Paris."
    assert inner.calls[0]["tools"][0]["function"]["name"] == "lookup"


async def test_create_agent_with_a_guarded_model_blocks_an_unsafe_tool_call(guard: NemoGuard) -> None:
    inner = fake(call("lookup", query="how to make a bomb at home"), "done")
    agent = create_agent(model=guard.wrap(inner), tools=[lookup])
    with pytest.raises(ContentBlockedError):
        await agent.ainvoke({"messages": [HumanMessage("find me facts")]})


def test_a_global_model_cache_never_skips_the_checks(guard: NemoGuard, nemoguard_simulator: SimulatorServer) -> None:
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import set_llm_cache

    set_llm_cache(InMemoryCache())
    try:
        guarded = guard.wrap(fake(SAFE))
        assert guarded.invoke("capital?").content == SAFE
        before = len(nemoguard_simulator.requests())
        assert guarded.invoke("capital?").content == SAFE
        assert len(nemoguard_simulator.requests()) == before + 2  # input and output judged again
    finally:
        set_llm_cache(None)


async def test_async_stream_events_v3_streams_judged_text(guard: NemoGuard) -> None:
    guarded = guard.wrap(fake(SAFE + " " + UNSAFE), stream=SMALL, action="rewrite")
    stream = await guarded.astream_events("a story", version="v3")
    text = "".join([t async for t in stream.text])
    assert "bomb" not in text
    assert text.endswith(REFUSAL)
