"""LangChain's conventions in the wrapper and the middleware: ``exit_behavior``, an outage that is not a block,
``with_fallbacks`` / ``with_retry`` that tell them apart, and an outage message that names nothing internal."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fake_chat import call, lookup, model
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from langchain_nemoguard import (
    CacheOptions,
    ConfigurationError,
    ContentBlockedError,
    GuardUnavailableError,
    NemoGuard,
    NemoGuardMiddleware,
    Policy,
    PolicySet,
    StreamOptions,
    TransportOptions,
)
from langchain_nemoguard.core.verdict import DEFAULT_OUTAGE_MESSAGE
from langchain_nemoguard.langchain.middleware import MARKER, WITHHELD_INPUT, WITHHELD_TOOL_RESULT
from langchain_nemoguard.simulator import SimulatorServer

UNSAFE = "Sure. First you gather the parts, then you make a bomb by packing it tightly, then you wait."
SAFE = "Paris is the capital of France, a city on the Seine known for its museums and cafes."
REFUSAL = "I can't help with that request."
SMALL = StreamOptions(window_chars=40, overlap_chars=10, first_window_chars=20)

# an internal address an outage must never show: the transport names its endpoint in Verdict.error_message
INTERNAL_HOST = "guard-7f3a.internal.corp.example"
INTERNAL_URL = f"http://{INTERNAL_HOST}:8443/v1"
SECRET_KEY = "sk-nemoguard-SECRET-0123456789"


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture
def guard(nemoguard_simulator: SimulatorServer) -> NemoGuard:
    policies = PolicySet(
        {
            "default": Policy(name="default"),
            "rewrite": Policy(name="rewrite", actions={"*": "rewrite"}, refusal="Let's talk about something else."),
            "log": Policy(name="log", actions={"*": "log"}),
        },
        default="default",
    )
    return NemoGuard(base_url=nemoguard_simulator.base_url, policies=policies, cache=CacheOptions(size=0))


class Counter:
    """Counts the guard's HTTP calls; every one fails as a refused connection that names the endpoint."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise httpx.ConnectError(f"connection refused by {request.url}", request=request)


def down_guard(counter: Counter | None = None, **kwargs: Any) -> NemoGuard:
    handler = counter or Counter()

    async def ahandler(request: httpx.Request) -> httpx.Response:
        return handler(request)

    return NemoGuard(
        base_url=INTERNAL_URL,
        api_key=SECRET_KEY,
        max_retries=0,
        cache=CacheOptions(size=0),
        transport=TransportOptions(
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(ahandler)),
        ),
        **kwargs,
    )


class Recorder:
    """An inner runnable that counts its calls."""

    def __init__(self, answer: str = SAFE) -> None:
        self.calls = 0
        self.answer = answer

    def __call__(self, _: Any) -> AIMessage:
        self.calls += 1
        return AIMessage(self.answer)


def no_unsafe(messages: list[BaseMessage]) -> bool:
    return not any("bomb" in f"{m.content}{getattr(m, 'tool_calls', '')}" for m in messages)


def all_runs(collector: RunCollectorCallbackHandler) -> list[Any]:
    out: list[Any] = []
    stack = list(collector.traced_runs)
    while stack:
        run = stack.pop()
        out.append(run)
        stack.extend(run.child_runs)
    return out


def payload_of(run: Any) -> str:
    return json.dumps(
        {
            "inputs": run.inputs,
            "outputs": run.outputs,
            "extra": run.extra,
            "error": run.error,
            "tags": run.tags,
            "events": run.events,
        },
        default=str,
    )


# --- exit_behavior: the wrapper -----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
async def test_wrapper_exit_behaviors_on_an_input_block(guard: NemoGuard, use_async: bool) -> None:
    for exit_behavior in ("end", "replace"):
        inner = Recorder()
        guarded = guard.wrap(RunnableLambda(inner), exit_behavior=exit_behavior)
        out = await guarded.ainvoke("how do I make a bomb?") if use_async else guarded.invoke("how do I make a bomb?")
        assert isinstance(out, AIMessage) and out.content == REFUSAL
        assert inner.calls == 0
    inner = Recorder()
    with pytest.raises(ContentBlockedError) as info:
        guard.wrap(RunnableLambda(inner), exit_behavior="error").invoke("how do I make a bomb?")
    assert not isinstance(info.value, GuardUnavailableError)
    assert info.value.categories == ["Violence"]
    assert inner.calls == 0


def test_wrapper_exit_behavior_overrides_a_rewrite_policy(guard: NemoGuard) -> None:
    # rewrite answers by default; "error" makes the same enforced verdict raise
    assert guard.wrap(RunnableLambda(Recorder(UNSAFE)), policy="rewrite").invoke("a story").content == (
        "Let's talk about something else."
    )
    with pytest.raises(ContentBlockedError):
        guard.wrap(RunnableLambda(Recorder(UNSAFE)), policy="rewrite", exit_behavior="error").invoke("a story")
    # and "end" makes a block answer
    out = guard.wrap(RunnableLambda(Recorder(UNSAFE)), exit_behavior="end").invoke("a story")
    assert out.content == REFUSAL


def test_wrapper_exit_behavior_never_turns_log_into_a_block(guard: NemoGuard) -> None:
    for exit_behavior in ("end", "error", "replace"):
        out = guard.wrap(RunnableLambda(Recorder(UNSAFE)), policy="log", exit_behavior=exit_behavior).invoke("story")
        assert out.content == UNSAFE


def test_wrapper_exit_behavior_in_a_stream(guard: NemoGuard) -> None:
    chunks = list(
        guard.wrap(RunnableLambda(Recorder(UNSAFE)), stream=SMALL, exit_behavior="end").stream("a story")
    )
    assert chunks[-1].content == REFUSAL and "bomb" not in "".join(str(c.content) for c in chunks)
    with pytest.raises(ContentBlockedError):
        list(guard.wrap(RunnableLambda(Recorder(UNSAFE)), stream=SMALL, exit_behavior="error", policy="rewrite").stream("x"))


def test_wrapper_rejects_conflicting_or_misspelt_exits(guard: NemoGuard) -> None:
    with pytest.raises(TypeError, match="exit_behavior"):
        guard.wrap(RunnableLambda(Recorder()), action="block", exit_behavior="end")
    with pytest.raises(ValueError, match="exit_behavior"):
        guard.wrap(RunnableLambda(Recorder()), exit_behavior="raise")


# --- outages: the wrapper --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exit_behavior", [None, "error"])
async def test_wrapper_outage_raises_guard_unavailable_not_blocked(exit_behavior: Any) -> None:
    inner = Recorder()
    guarded = down_guard().wrap(RunnableLambda(inner), exit_behavior=exit_behavior)
    for use_async in (False, True):
        with pytest.raises(GuardUnavailableError) as info:
            await guarded.ainvoke("hello") if use_async else guarded.invoke("hello")
        assert not isinstance(info.value, ContentBlockedError)
        assert info.value.code.value == "connect"
        assert INTERNAL_HOST not in str(info.value) and SECRET_KEY not in str(info.value)
        assert INTERNAL_HOST not in json.dumps(info.value.verdict.to_dict())
    assert inner.calls == 0


@pytest.mark.parametrize("exit_behavior", ["end", "replace"])
def test_wrapper_outage_answers_with_the_outage_message(exit_behavior: Any) -> None:
    inner = Recorder()
    out = down_guard().wrap(RunnableLambda(inner), exit_behavior=exit_behavior).invoke("hello")
    assert out.content == DEFAULT_OUTAGE_MESSAGE != REFUSAL
    assert inner.calls == 0
    dumped = json.dumps(out.model_dump(), default=str)
    assert INTERNAL_HOST not in dumped and SECRET_KEY not in dumped


def test_a_rewrite_policy_answers_an_outage_with_the_configurable_outage_message() -> None:
    guard = down_guard(policy=Policy(actions={"*": "rewrite"}, refusal="Let's talk about something else."))
    out = guard.wrap(RunnableLambda(Recorder()), outage_message="Back soon.").invoke("hello")
    assert out.content == "Back soon."
    streamed = list(guard.wrap(RunnableLambda(Recorder()), check_input=False, stream=SMALL).stream("hello"))
    assert [str(c.content) for c in streamed] == [DEFAULT_OUTAGE_MESSAGE]


def test_wrapper_outage_fail_open_still_passes() -> None:
    for exit_behavior in ("end", "error", "replace"):
        out = down_guard(on_error="allow").wrap(RunnableLambda(Recorder()), exit_behavior=exit_behavior)
        assert out.invoke("hello").content == SAFE


def test_an_outage_leaves_no_internal_address_in_traces_or_events() -> None:
    runs = RunCollectorCallbackHandler()
    events: list[Any] = []

    class Events(RunCollectorCallbackHandler):
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            events.append(data)

    out = down_guard().wrap(RunnableLambda(Recorder()), exit_behavior="end").invoke(
        "hello", config={"callbacks": [runs, Events()]}
    )
    assert out.content == DEFAULT_OUTAGE_MESSAGE
    payloads = [payload_of(r) for r in all_runs(runs)] + [json.dumps(events, default=str)]
    assert any("NemoGuard:input" in p or "connect" in p for p in payloads)
    assert events and events[0]["unavailable"] is True
    for text in payloads:
        assert INTERNAL_HOST not in text and SECRET_KEY not in text


# --- with_fallbacks and with_retry ------------------------------------------------------------------------------------


def test_fallback_only_when_the_guard_is_down(guard: NemoGuard) -> None:
    fallback = RunnableLambda(lambda _: AIMessage("Fallback answer."))
    # the guard is down: the fallback answers
    down = down_guard().wrap(RunnableLambda(Recorder()))
    out = down.with_fallbacks([fallback], exceptions_to_handle=(GuardUnavailableError,)).invoke("hello")
    assert out.content == "Fallback answer."
    # a policy block is not an outage: it propagates past a fallback for outages
    up = guard.wrap(RunnableLambda(Recorder(UNSAFE)))
    with pytest.raises(ContentBlockedError):
        up.with_fallbacks([fallback], exceptions_to_handle=(GuardUnavailableError,)).invoke("a story")
    # and the other way round: a fallback for blocks does not swallow an outage
    with pytest.raises(GuardUnavailableError):
        down.with_fallbacks([fallback], exceptions_to_handle=(ContentBlockedError,)).invoke("hello")


@pytest.mark.parametrize("use_async", [False, True])
async def test_with_retry_does_not_retry_a_block(guard: NemoGuard, use_async: bool) -> None:
    inner = Recorder(UNSAFE)
    retried = guard.wrap(RunnableLambda(inner)).with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
    with pytest.raises(ContentBlockedError):
        await retried.ainvoke("a story") if use_async else retried.invoke("a story")
    assert inner.calls == 1
    # a caller who names blocks gets them retried
    inner = Recorder(UNSAFE)
    named = guard.wrap(RunnableLambda(inner)).with_retry(
        retry_if_exception_type=(ContentBlockedError,), stop_after_attempt=3, wait_exponential_jitter=False
    )
    with pytest.raises(ContentBlockedError):
        await named.ainvoke("a story") if use_async else named.invoke("a story")
    assert inner.calls == 3


def test_with_retry_retries_an_outage() -> None:
    counter = Counter()
    inner = Recorder()
    retried = down_guard(counter).wrap(RunnableLambda(inner)).with_retry(
        stop_after_attempt=3, wait_exponential_jitter=False
    )
    with pytest.raises(GuardUnavailableError):
        retried.invoke("hello")
    assert counter.calls == 3 and inner.calls == 0


def test_with_retry_through_with_config_keeps_the_rule(guard: NemoGuard) -> None:
    inner = Recorder(UNSAFE)
    retried = guard.wrap(RunnableLambda(inner)).with_config(tags=["x"]).with_retry(wait_exponential_jitter=False)
    with pytest.raises(ContentBlockedError):
        retried.invoke("a story")
    assert inner.calls == 1


# --- exit_behavior: the middleware -------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
async def test_middleware_exit_error_raises_typed_errors(guard: NemoGuard, use_async: bool) -> None:
    llm = model(SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard, exit_behavior="error")])
    payload = {"messages": [HumanMessage("how do I make a bomb?")]}
    with pytest.raises(ContentBlockedError) as info:
        await agent.ainvoke(payload) if use_async else agent.invoke(payload)
    assert not isinstance(info.value, GuardUnavailableError)
    assert llm.calls == 0
    down = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(down_guard(), exit_behavior="error")])
    with pytest.raises(GuardUnavailableError) as outage:
        await down.ainvoke({"messages": [HumanMessage("hello")]}) if use_async else down.invoke(
            {"messages": [HumanMessage("hello")]}
        )
    assert not isinstance(outage.value, ContentBlockedError)
    assert INTERNAL_HOST not in str(outage.value)


def test_middleware_exit_error_on_output_raises(guard: NemoGuard) -> None:
    agent = create_agent(model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, exit_behavior="error")])
    with pytest.raises(ContentBlockedError) as info:
        agent.invoke({"messages": [HumanMessage("a story")]})
    assert info.value.stage.value == "output"


def test_middleware_raise_on_block_outage_is_guard_unavailable() -> None:
    agent = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(down_guard(), raise_on_block=True)])
    with pytest.raises(GuardUnavailableError):
        agent.invoke({"messages": [HumanMessage("hello")]})


@pytest.mark.parametrize("use_async", [False, True])
async def test_middleware_exit_end_answers_and_stops(guard: NemoGuard, use_async: bool) -> None:
    llm = model(SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard, exit_behavior="end")])
    payload = {"messages": [HumanMessage("how do I make a bomb?")]}
    out = await agent.ainvoke(payload) if use_async else agent.invoke(payload)
    assert [m.content for m in out["messages"]] == [WITHHELD_INPUT, REFUSAL]
    assert llm.calls == 0


@pytest.mark.parametrize("use_async", [False, True])
async def test_middleware_exit_replace_goes_on(guard: NemoGuard, use_async: bool) -> None:
    llm = model(SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard, exit_behavior="replace")])
    payload = {"messages": [HumanMessage("how do I make a bomb?")]}
    out = await agent.ainvoke(payload) if use_async else agent.invoke(payload)
    # the turn now carries the refusal (same id), and the model answered it
    assert [m.content for m in out["messages"]] == [REFUSAL, SAFE]
    assert llm.calls == 1


def test_middleware_tool_result_end_versus_replace(guard: NemoGuard) -> None:
    llm = model(call("lookup", query="recipe"), SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard, exit_behavior="end")])
    out = agent.invoke({"messages": [HumanMessage("look up a recipe")]})
    assert next(m for m in out["messages"] if isinstance(m, ToolMessage)).content == WITHHELD_TOOL_RESULT
    assert out["messages"][-1].content == REFUSAL and llm.calls == 1 and no_unsafe(out["messages"])

    llm = model(call("lookup", query="recipe"), SAFE)
    agent = create_agent(llm, tools=[lookup], middleware=[NemoGuardMiddleware(guard, exit_behavior="replace")])
    out = agent.invoke({"messages": [HumanMessage("look up a recipe")]})
    assert next(m for m in out["messages"] if isinstance(m, ToolMessage)).content == REFUSAL
    assert out["messages"][-1].content == SAFE and llm.calls == 2 and no_unsafe(out["messages"])


def test_middleware_exit_behavior_never_turns_log_into_a_block(guard: NemoGuard) -> None:
    agent = create_agent(
        model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, policy="log", exit_behavior="error")]
    )
    out = agent.invoke({"messages": [HumanMessage("how do I make a bomb")]})
    assert out["messages"][-1].content == UNSAFE


@pytest.mark.parametrize("exit_behavior", [None, "end", "replace"])
def test_middleware_outage_message_is_not_the_refusal(exit_behavior: Any) -> None:
    llm = model(SAFE)
    middleware = NemoGuardMiddleware(down_guard(), exit_behavior=exit_behavior, outage_message="Back in a minute.")
    out = create_agent(llm, tools=[lookup], middleware=[middleware]).invoke({"messages": [HumanMessage("hello")]})
    assert out["messages"][-1].content == "Back in a minute."
    assert SAFE not in [m.content for m in out["messages"]]  # nothing unjudged reached the caller
    assert out["messages"][-1].response_metadata[MARKER]["error"] == "connect"
    dumped = json.dumps([m.model_dump() for m in out["messages"]], default=str)
    assert INTERNAL_HOST not in dumped and SECRET_KEY not in dumped


def test_middleware_rejects_conflicting_or_misspelt_exits(guard: NemoGuard) -> None:
    with pytest.raises(TypeError, match="exit_behavior"):
        NemoGuardMiddleware(guard, action="block", exit_behavior="end")
    with pytest.raises(TypeError, match="raise_on_block"):
        NemoGuardMiddleware(guard, raise_on_block=True, exit_behavior="replace")
    with pytest.raises(ConfigurationError, match="exit_behavior"):
        NemoGuardMiddleware(guard, exit_behavior="raise")  # type: ignore[arg-type]
    NemoGuardMiddleware(guard, raise_on_block=True, exit_behavior="error")  # the same thing said twice


def test_same_exit_behavior_same_meaning_in_wrapper_and_middleware(guard: NemoGuard) -> None:
    """An unsafe answer under each exit behaviour: the user sees the same thing from both adapters."""
    for exit_behavior in ("end", "replace"):
        wrapped = guard.wrap(RunnableLambda(Recorder(UNSAFE)), exit_behavior=exit_behavior).invoke("a story")
        agent = create_agent(
            model(UNSAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard, exit_behavior=exit_behavior)]
        )
        final = agent.invoke({"messages": [HumanMessage("a story")]})["messages"][-1]
        assert wrapped.content == final.content == REFUSAL


# --- traced checks in agents ------------------------------------------------------------------------------------------


def check_runs(collector: RunCollectorCallbackHandler) -> list[Any]:
    runs = [r for r in all_runs(collector) if r.name.startswith("NemoGuard:")]
    return sorted(runs, key=lambda r: r.start_time)


@pytest.mark.parametrize("use_async", [False, True])
async def test_each_middleware_check_is_its_own_run(nemoguard_simulator: SimulatorServer, use_async: bool) -> None:
    guard = NemoGuard(base_url=nemoguard_simulator.base_url, api_key=SECRET_KEY, cache=CacheOptions(size=0))
    agent = create_agent(
        model(call("lookup", query="capital"), SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)]
    )
    runs = RunCollectorCallbackHandler()
    payload = {"messages": [HumanMessage("What is the capital of France?")]}
    config = {"callbacks": [runs]}
    out = await agent.ainvoke(payload, config) if use_async else agent.invoke(payload, config)
    assert out["messages"][-1].content == SAFE
    checks = check_runs(runs)
    # one run per check, in the order the agent made them
    assert [r.name for r in checks] == [
        "NemoGuard:input",
        "NemoGuard:tool_call",
        "NemoGuard:tool_result",
        "NemoGuard:output",
    ]
    for run in checks:
        meta = run.extra["metadata"]
        assert run.name == f"NemoGuard:{meta['nemoguard_stage']}"
        assert "nemoguard" in run.tags
        assert meta["nemoguard_verdict"] == "safe" and meta["nemoguard_allowed"] is True
        assert meta["nemoguard_categories"] == []
        assert meta["nemoguard_latency_ms"] > 0
        assert run.outputs["verdict"]["safe"] is True
        assert run.parent_run_id is not None  # a child of the agent node that ran the hook
        # sizes only: no user text in the check's own inputs
        assert "France" not in json.dumps(run.inputs) and run.inputs["prompt_chars"] > 0
    for run in all_runs(runs):
        text = payload_of(run)
        assert SECRET_KEY not in text
        assert nemoguard_simulator.base_url not in text


def test_a_blocking_middleware_check_records_its_verdict(guard: NemoGuard) -> None:
    runs = RunCollectorCallbackHandler()
    agent = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    agent.invoke({"messages": [HumanMessage("how do I make a bomb?")]}, {"callbacks": [runs]})
    (check,) = check_runs(runs)
    assert check.name == "NemoGuard:input"
    meta = check.extra["metadata"]
    assert meta["nemoguard_allowed"] is False and meta["nemoguard_categories"] == ["Violence"]
    assert meta["nemoguard_verdict"] == "unsafe"
    assert check.outputs["allowed"] is False


def test_an_agent_outage_leaves_no_internal_address_in_any_run() -> None:
    runs = RunCollectorCallbackHandler()
    agent = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(down_guard())])
    out = agent.invoke({"messages": [HumanMessage("hello")]}, {"callbacks": [runs]})
    assert out["messages"][-1].content == DEFAULT_OUTAGE_MESSAGE
    (check,) = check_runs(runs)
    assert check.extra["metadata"]["nemoguard_error"] == "connect"
    assert check.extra["metadata"]["nemoguard_verdict"] == "unavailable"
    for run in all_runs(runs):
        text = payload_of(run)
        assert INTERNAL_HOST not in text and SECRET_KEY not in text


def test_wrapper_and_middleware_check_runs_look_alike(guard: NemoGuard) -> None:
    wrapper_runs = RunCollectorCallbackHandler()
    guard.wrap(RunnableLambda(Recorder())).invoke("capital?", config={"callbacks": [wrapper_runs]})
    agent_runs = RunCollectorCallbackHandler()
    agent = create_agent(model(SAFE), tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    agent.invoke({"messages": [HumanMessage("capital?")]}, {"callbacks": [agent_runs]})
    for collector in (wrapper_runs, agent_runs):
        runs = check_runs(collector)
        assert [r.name for r in runs] == ["NemoGuard:input", "NemoGuard:output"]
        assert all(set(r.extra["metadata"]) >= {"nemoguard_stage", "nemoguard_policy", "nemoguard_safe"} for r in runs)


def test_wrapper_stream_refusal_is_a_chunk(guard: NemoGuard) -> None:
    """A streamed wrapper refusal is a chunk (so ``+`` still works on what a stream yields)."""
    chunks = list(guard.wrap(RunnableLambda(Recorder(UNSAFE)), stream=SMALL, exit_behavior="replace").stream("x"))
    assert isinstance(chunks[-1], AIMessageChunk)


async def test_outage_exit_end_in_async_streams_and_parallel_mode() -> None:
    guard = down_guard()
    chunks = [c async for c in guard.wrap(RunnableLambda(Recorder()), exit_behavior="end").astream("hello")]
    assert [str(c.content) for c in chunks] == [DEFAULT_OUTAGE_MESSAGE]
    inner = Recorder()
    parallel = guard.wrap(RunnableLambda(inner), parallel=True, exit_behavior="replace")
    assert (await parallel.ainvoke("hello")).content == DEFAULT_OUTAGE_MESSAGE
    assert [str(c.content) for c in parallel.stream("hello")] == [DEFAULT_OUTAGE_MESSAGE]
    with pytest.raises(GuardUnavailableError):
        [c async for c in guard.wrap(RunnableLambda(Recorder()), parallel=True).astream("hello")]
