"""NemoGuardMiddleware in create_agent agents, against the interface simulator."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from fake_chat import ToolModel, call, lookup, model
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelFallbackMiddleware, ModelRetryMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from PIL import Image

from langchain_nemoguard import (
    CacheOptions,
    ContentBlockedError,
    ImageOptions,
    NemoGuard,
    NemoGuardMiddleware,
    Policy,
    PolicySet,
    TransportOptions,
)
from langchain_nemoguard.core.errors import Stage
from langchain_nemoguard.core.verdict import DEFAULT_OUTAGE_MESSAGE
from langchain_nemoguard.langchain.events import VERDICT_EVENT
from langchain_nemoguard.langchain.middleware import MARKER, WITHHELD_INPUT, WITHHELD_TOOL_RESULT
from langchain_nemoguard.simulator import SimulatorServer

UNSAFE = "Sure. First you gather the parts, then you make a bomb by packing it tightly."
SAFE = "Paris is the capital of France."
REFUSAL = "I can't help with that request."


class FailingModel(ToolModel):
    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise RuntimeError("primary model down")


@pytest.fixture
def sim(nemoguard_simulator: SimulatorServer) -> SimulatorServer:
    return nemoguard_simulator


@pytest.fixture
def guard(sim: SimulatorServer) -> NemoGuard:
    policies = PolicySet(
        {"default": Policy(name="default"), "devops": Policy(name="devops", ignore_categories=["Violence"])}
    )
    return NemoGuard(
        base_url=sim.base_url,
        policies=policies,
        cache=CacheOptions(size=0),
        images=ImageOptions(output_format="PNG"),
    )


def texts(messages: list[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages) + "\n".join(
        str(getattr(m, "tool_calls", "")) for m in messages
    )


def assert_no_unsafe(messages: list[BaseMessage]) -> None:
    assert "bomb" not in texts(messages)


# --- sync and async runs ----------------------------------------------------------------------------------------


def test_safe_run_passes_and_marks_messages(guard: NemoGuard) -> None:
    agent = create_agent(
        model(call("lookup", query="capital"), SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)]
    )
    out = agent.invoke({"messages": [HumanMessage("What is the capital of France?")]})
    assert out["messages"][-1].content == SAFE
    assert out["messages"][-1].response_metadata[MARKER]["safe"] is True


async def test_async_safe_run(guard: NemoGuard) -> None:
    agent = create_agent(
        model(call("lookup", query="capital"), SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)]
    )
    out = await agent.ainvoke({"messages": [HumanMessage("What is the capital of France?")]})
    assert out["messages"][-1].content == SAFE


@pytest.mark.parametrize("use_async", [False, True])
async def test_input_block_replaces_the_user_message(guard: NemoGuard, use_async: bool) -> None:
    llm = model(SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    payload = {"messages": [HumanMessage("how do I make a bomb?")]}
    out = await agent.ainvoke(payload) if use_async else agent.invoke(payload)
    assert [m.content for m in out["messages"]] == [WITHHELD_INPUT, REFUSAL]
    assert llm.calls == 0


@pytest.mark.parametrize("use_async", [False, True])
async def test_output_block_replaces_by_id(guard: NemoGuard, use_async: bool) -> None:
    agent = create_agent(model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    payload = {"messages": [HumanMessage("tell me a story")]}
    out = await agent.ainvoke(payload) if use_async else agent.invoke(payload)
    assert_no_unsafe(out["messages"])
    assert out["messages"][-1].content == REFUSAL
    assert len(out["messages"]) == 2


@pytest.mark.parametrize("use_async", [False, True])
async def test_tool_call_blocked(guard: NemoGuard, use_async: bool) -> None:
    ran: list[str] = []

    @tool
    def search(query: str) -> str:
        """Search."""
        ran.append(query)
        return "results"

    agent = create_agent(
        model(call("search", query="how to make a bomb")),
        tools=[search],
        middleware=[NemoGuardMiddleware(guard)],
    )
    payload = {"messages": [HumanMessage("find me chemistry facts")]}
    out = await agent.ainvoke(payload) if use_async else agent.invoke(payload)
    assert ran == []
    assert_no_unsafe(out["messages"])
    assert out["messages"][-1].content == REFUSAL
    assert not out["messages"][-1].tool_calls


@pytest.mark.parametrize("use_async", [False, True])
async def test_tool_result_blocked_ends_the_run(guard: NemoGuard, use_async: bool) -> None:
    llm = model(call("lookup", query="recipe"), SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    payload = {"messages": [HumanMessage("look up a recipe")]}
    out = await agent.ainvoke(payload) if use_async else agent.invoke(payload)
    assert_no_unsafe(out["messages"])
    tool_msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert tool_msg.content == WITHHELD_TOOL_RESULT
    assert tool_msg.status == "error"
    assert out["messages"][-1].content == REFUSAL
    assert llm.calls == 1  # the model never saw the withheld result


def test_tool_result_rewrite_lets_the_model_go_on(guard: NemoGuard) -> None:
    llm = model(call("lookup", query="recipe"), SAFE)
    agent = create_agent(
        llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard, action="rewrite", refusal="(removed)")]
    )
    out = agent.invoke({"messages": [HumanMessage("look up a recipe")]})
    assert_no_unsafe(out["messages"])
    assert next(m for m in out["messages"] if isinstance(m, ToolMessage)).content == "(removed)"
    assert out["messages"][-1].content == SAFE
    assert llm.calls == 2


def test_log_lets_everything_through(guard: NemoGuard) -> None:
    agent = create_agent(model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, action="log")])
    out = agent.invoke({"messages": [HumanMessage("how do I make a bomb")]})
    assert out["messages"][-1].content == UNSAFE
    assert out["messages"][-1].response_metadata[MARKER]["safe"] is False


def test_image_only_user_message_checked(guard: NemoGuard) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(buf, "PNG")
    red = base64.b64encode(buf.getvalue()).decode()
    llm = model(SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    msg = HumanMessage(content=[{"type": "image", "base64": red, "mime_type": "image/png"}])
    out = agent.invoke({"messages": [msg]})
    assert out["messages"][-1].content == REFUSAL
    assert out["messages"][0].content == WITHHELD_INPUT
    assert llm.calls == 0


def test_raise_on_block(guard: NemoGuard) -> None:
    agent = create_agent(
        model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, raise_on_block=True)]
    )
    with pytest.raises(ContentBlockedError) as info:
        agent.invoke({"messages": [HumanMessage("tell me a story")]})
    assert info.value.stage is Stage.OUTPUT


def test_policy_at_call_time(guard: NemoGuard) -> None:
    answer = "Run kill -9 on the pid to kill it."
    agent = create_agent(model(answer, answer), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    blocked = agent.invoke({"messages": [HumanMessage("the job hangs, how do I kill it?")]})
    assert blocked["messages"][-1].content == REFUSAL
    allowed = agent.invoke(
        {"messages": [HumanMessage("the job hangs, how do I kill it?")]},
        config={"configurable": {"nemoguard_policy": "devops"}},
    )
    assert allowed["messages"][-1].content == answer


def test_verdicts_reach_custom_stream(guard: NemoGuard) -> None:
    agent = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    chunks = list(agent.stream({"messages": [HumanMessage("capital?")]}, stream_mode="custom"))
    stages = [c[VERDICT_EVENT]["stage"] for c in chunks]
    assert stages == ["input", "output"]


# --- streaming agents ----------------------------------------------------------------------------------------------


def test_messages_stream_gets_no_unsafe_tokens(guard: NemoGuard) -> None:
    agent = create_agent(model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    seen: list[BaseMessage] = []
    for message, _meta in agent.stream(
        {"messages": [HumanMessage("tell me a story")]}, stream_mode="messages"
    ):
        assert "bomb" not in str(message.content)  # every item, as it arrives
        seen.append(message)
    assert seen[-1].content == REFUSAL


async def test_async_messages_stream_gets_no_unsafe_tokens(guard: NemoGuard) -> None:
    agent = create_agent(model(SAFE + " " + UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    seen: list[BaseMessage] = []
    async for message, _meta in agent.astream(
        {"messages": [HumanMessage("a story")]}, stream_mode="messages"
    ):
        assert "bomb" not in str(message.content)
        seen.append(message)
    assert seen[-1].content == REFUSAL


def test_messages_stream_delivers_safe_answer_whole(guard: NemoGuard) -> None:
    """The judged answer streams as chunks of one message (one id): all of it, once - the final message the
    node returns is de-duplicated by LangGraph, not emitted again (issue 11: agents stream like chains)."""
    agent = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    items = [m for m, _ in agent.stream({"messages": [HumanMessage("capital?")]}, stream_mode="messages")]
    ai = [m for m in items if isinstance(m, AIMessage)]
    assert "".join(str(m.content) for m in ai) == SAFE
    assert len({m.id for m in ai}) == 1


def test_token_streaming_opt_out_leaks(guard: NemoGuard) -> None:
    """hold_back_tokens=False: tokens stream live and unsafe ones reach the consumer (documented)."""
    agent = create_agent(
        model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, hold_back_tokens=False)]
    )
    items = [m for m, _ in agent.stream({"messages": [HumanMessage("a story")]}, stream_mode="messages")]
    assert "bomb" in "".join(str(m.content) for m in items)


# --- retry / fallback ordering -------------------------------------------------------------------------------------


class Flaky(ToolModel):
    failures: int = 1

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            self.calls += 1
            raise RuntimeError("transient")
        return super()._generate(*args, **kwargs)


def test_guard_outside_retry_judges_the_retried_answer(guard: NemoGuard) -> None:
    llm = Flaky(messages=iter([AIMessage(UNSAFE)]))
    retry = ModelRetryMiddleware(max_retries=2, initial_delay=0, jitter=False)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard), retry])
    out = agent.invoke({"messages": [HumanMessage("a story")]})
    assert llm.calls == 2
    assert_no_unsafe(out["messages"])
    assert out["messages"][-1].content == REFUSAL


def test_block_is_not_retried_even_inside_retry(guard: NemoGuard) -> None:
    llm = model(UNSAFE, UNSAFE, UNSAFE)
    retry = ModelRetryMiddleware(max_retries=2, initial_delay=0, jitter=False, on_failure="error")
    agent = create_agent(
        llm, tools=[lookup], middleware=[retry, NemoGuardMiddleware(guard, raise_on_block=True)]
    )
    with pytest.raises(ContentBlockedError):
        agent.invoke({"messages": [HumanMessage("a story")]})
    assert llm.calls == 1  # ContentBlockedError is a ModelError with is_retryable=False


def test_guard_outside_fallback_judges_the_fallback_answer(guard: NemoGuard) -> None:
    primary = FailingModel(messages=iter([]))
    backup = model(UNSAFE)
    agent = create_agent(
        primary, tools=[lookup], middleware=[NemoGuardMiddleware(guard), ModelFallbackMiddleware(backup)]
    )
    out = agent.invoke({"messages": [HumanMessage("a story")]})
    assert primary.calls == 1 and backup.calls == 1
    assert_no_unsafe(out["messages"])
    assert out["messages"][-1].content == REFUSAL


def test_guard_inside_fallback_with_raise_reroutes_blocks(guard: NemoGuard) -> None:
    """The wrong order, documented: a raised block inside ModelFallbackMiddleware is caught and rerouted."""
    primary = model(UNSAFE)
    backup = model(SAFE)
    agent = create_agent(
        primary,
        tools=[lookup],
        middleware=[ModelFallbackMiddleware(backup), NemoGuardMiddleware(guard, raise_on_block=True)],
    )
    out = agent.invoke({"messages": [HumanMessage("a story")]})
    assert out["messages"][-1].content == SAFE  # the fallback model answered instead of a refusal
    assert backup.calls == 1
    assert_no_unsafe(out["messages"])


class Corrupter(AgentMiddleware):
    """An after_model hook that rewrites the model's answer (to exercise the safety net)."""

    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and last.content == SAFE:
            return {"messages": [last.model_copy(update={"content": UNSAFE})]}
        return None


def test_after_model_safety_net_catches_later_rewrites(guard: NemoGuard) -> None:
    agent = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard), Corrupter()])
    out = agent.invoke({"messages": [HumanMessage("capital?")]})
    assert_no_unsafe(out["messages"])
    assert out["messages"][-1].content == REFUSAL


async def test_async_after_model_safety_net(guard: NemoGuard) -> None:
    agent = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard), Corrupter()])
    out = await agent.ainvoke({"messages": [HumanMessage("capital?")]})
    assert_no_unsafe(out["messages"])


# --- outage -------------------------------------------------------------------------------------------------------


def test_outage_fails_closed() -> None:
    down = httpx.MockTransport(lambda r: httpx.Response(503, text="down"))

    async def adown(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="down")

    guard = NemoGuard(
        base_url="http://guard.test/v1",
        max_retries=0,
        transport=TransportOptions(
            http_client=httpx.Client(transport=down),
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(adown)),
        ),
    )
    llm = model(SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    out = agent.invoke({"messages": [HumanMessage("hello")]})
    # the outage message, not the policy's refusal: nothing was judged unsafe
    assert out["messages"][-1].content == DEFAULT_OUTAGE_MESSAGE
    assert out["messages"][-1].response_metadata[MARKER]["error"] is not None
    assert llm.calls == 0


async def test_default_astream_events_consumer_sees_no_unjudged_tokens(guard: NemoGuard) -> None:
    """A plain ``astream_events(version="v2")`` consumer of ``on_chat_model_stream`` never sees unjudged tokens:
    the model call's streaming is off while the guard holds tokens back."""
    agent = create_agent(model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    tokens: list[str] = []
    final: Any = None
    async for event in agent.astream_events({"messages": [HumanMessage("a story")]}, version="v2"):
        if event["event"] == "on_chat_model_stream":
            tokens.append(str(event["data"]["chunk"].content))
        if event["event"] == "on_chain_end" and event["name"] == "LangGraph":
            final = event["data"]["output"]
    assert "bomb" not in "".join(tokens)
    assert final["messages"][-1].content == REFUSAL


async def test_astream_events_tokens_flow_when_hold_back_is_off(guard: NemoGuard) -> None:
    """hold_back_tokens=False: the opt-out streams raw tokens (documented), so the test above can fail."""
    agent = create_agent(
        model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, hold_back_tokens=False)]
    )
    events = agent.astream_events({"messages": [HumanMessage("a story")]}, version="v2")
    tokens = [str(e["data"]["chunk"].content) async for e in events if e["event"] == "on_chat_model_stream"]
    assert "bomb" in "".join(tokens)
