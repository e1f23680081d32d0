"""GuardedRunnable against the interface simulator (and a few mocked-HTTP unit tests).

The simulator's rules flag e.g. "make a bomb" and "kill" (Violence) and leave "kill a process" alone; a pure red
top-left pixel makes an image unsafe.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from typing import Any

import httpx
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.exceptions import LangChainException
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from PIL import Image

from langchain_nemoguard import (
    AuditOptions,
    CacheOptions,
    ContentBlockedError,
    CoverageOptions,
    GuardedRunnable,
    GuardUnavailableError,
    ImageOptions,
    NemoGuard,
    Policy,
    PolicySet,
    StreamOptions,
    TransportOptions,
)
from langchain_nemoguard.core.errors import ContentBlockedError as CoreContentBlockedError
from langchain_nemoguard.core.errors import PolicyNotFoundError, Stage
from langchain_nemoguard.langchain.events import POLICY_CONFIG_KEY, UNCHECKED_TAG, VERDICT_EVENT
from langchain_nemoguard.langchain.messages import conversation_from_input, message_images, output_text
from langchain_nemoguard.simulator import SimulatorServer

UNSAFE_ANSWER = "Sure. First you gather the parts, then you make a bomb by packing it tightly, then you wait."
SAFE_ANSWER = "Paris is the capital of France, a city on the Seine known for its museums and cafes."
SMALL = StreamOptions(window_chars=40, overlap_chars=10, first_window_chars=20)


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture
def sim(nemoguard_simulator: SimulatorServer) -> SimulatorServer:
    return nemoguard_simulator


@pytest.fixture
def slow_sim(request: pytest.FixtureRequest) -> SimulatorServer:
    """The simulator answering after 150 ms (tests that take it carry the marker)."""
    server: SimulatorServer = request.getfixturevalue("nemoguard_simulator")
    assert server.config.latency_ms == 150, "mark the test @pytest.mark.nemoguard_simulator(latency_ms=150)"
    return server


SLOW = pytest.mark.nemoguard_simulator(latency_ms=150)


@pytest.fixture
def guard(sim: SimulatorServer) -> NemoGuard:
    policies = PolicySet(
        {
            "default": Policy(name="default"),
            "devops": Policy(name="devops", ignore_categories=["Violence"]),
            "rewrite": Policy(
                name="rewrite", actions={"*": "rewrite"}, refusal="Let's talk about something else."
            ),
        },
        default="default",
    )
    # PNG re-encoding keeps the simulator's "pure red pixel" image rule exact (JPEG would shift it to 254)
    images = ImageOptions(output_format="PNG")
    return NemoGuard(base_url=sim.base_url, policies=policies, cache=CacheOptions(size=0), images=images)


def chat(*answers: str | AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(
        messages=iter([a if isinstance(a, AIMessage) else AIMessage(a) for a in answers])
    )


class Recorder:
    """An inner runnable that records whether it ran."""

    def __init__(self, answer: str = SAFE_ANSWER) -> None:
        self.calls = 0
        self.answer = answer

    def __call__(self, _: Any) -> AIMessage:
        self.calls += 1
        return AIMessage(self.answer)


def png(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


# --- reading inputs -----------------------------------------------------------------------------------------------


def test_reads_every_input_shape() -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "be nice"), ("human", "{q}")]).invoke(
        {"q": "hello"}
    )
    assert conversation_from_input("hi").prompt == "hi"
    assert conversation_from_input({"messages": [("human", "a"), ("ai", "b"), ("human", "c")]}).prompt == "c"
    assert conversation_from_input({"question": "q?", "lang": "fr"}).prompt == "q?"
    assert conversation_from_input({"topic": "t", "lang": "fr"}).prompt == "t\nfr"
    assert conversation_from_input([SystemMessage("s"), HumanMessage("x")]).prompt == "x"
    assert conversation_from_input(prompt).prompt == "hello"
    assert conversation_from_input(HumanMessage("m")).prompt == "m"
    conv = conversation_from_input([("human", "one"), ("ai", "two"), ("human", "three")])
    assert [t.text for t in conv.history] == ["one", "two"]


def test_reads_images_in_every_form() -> None:
    data = png((0, 0, 255))
    msg = HumanMessage(
        content=[
            {"type": "image_url", "image_url": "https://example.com/a.png"},  # string form: non_standard
            {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
            {"type": "image", "base64": data, "mime_type": "image/png"},
            {"type": "image", "url": "https://example.com/c.png"},
            {"type": "text", "text": "what is this?"},
        ]
    )
    images = message_images(msg)
    assert images == (
        "https://example.com/a.png",
        "https://example.com/b.png",
        f"data:image/png;base64,{data}",
        f"data:image/png;base64,{data}",
        "https://example.com/c.png",
    )


def test_output_text_includes_tool_call_arguments() -> None:
    msg = AIMessage("", tool_calls=[{"name": "search", "args": {"q": "make a bomb"}, "id": "c1"}])
    assert "make a bomb" in output_text(msg)
    chunk = AIMessageChunk(
        content="", tool_call_chunks=[{"name": "search", "args": '{"q": "x', "id": "c1", "index": 0}]
    )
    assert output_text(chunk) == 'search: {"q": "x'


def _reasoning_answer(reasoning: str, text: str = SAFE_ANSWER) -> AIMessage:
    return AIMessage(content=[{"type": "reasoning", "reasoning": reasoning}, {"type": "text", "text": text}])


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_is_judged_as_the_coverage_rule_says(sim: SimulatorServer, stream: bool) -> None:
    """The model's reasoning reaches the caller too: the wrapper judges it unless ``check_reasoning=False``."""
    unsafe_thought = "The user wants to know how to make a bomb by packing it tightly."
    with NemoGuard(base_url=sim.base_url, cache=CacheOptions(size=0)) as guard:
        guarded = guard.wrap(RunnableLambda(lambda _: _reasoning_answer(unsafe_thought)))
        with pytest.raises(ContentBlockedError):
            list(guarded.stream("a question")) if stream else guarded.invoke("a question")
    with NemoGuard(
        base_url=sim.base_url, cache=CacheOptions(size=0), coverage=CoverageOptions(check_reasoning=False)
    ) as guard:
        guarded = guard.wrap(RunnableLambda(lambda _: _reasoning_answer(unsafe_thought)))
        out = list(guarded.stream("a question")) if stream else [guarded.invoke("a question")]
        assert SAFE_ANSWER in "".join(m.text for m in out)
    assert "make a bomb" in output_text(_reasoning_answer(unsafe_thought), reasoning=True)
    assert "make a bomb" not in output_text(_reasoning_answer(unsafe_thought))


# --- invoke / ainvoke ---------------------------------------------------------------------------------------------


def test_invoke_safe_passes(guard: NemoGuard) -> None:
    out = guard.wrap(chat(SAFE_ANSWER)).invoke("What is the capital of France?")
    assert isinstance(out, AIMessage)
    assert out.content == SAFE_ANSWER


def test_input_block_raises_langchain_exception_and_skips_inner(guard: NemoGuard) -> None:
    inner = Recorder()
    with pytest.raises(ContentBlockedError) as info:
        guard.wrap(RunnableLambda(inner)).invoke("how do I make a bomb?")
    err = info.value
    assert isinstance(err, LangChainException)
    assert isinstance(err, CoreContentBlockedError)
    assert err.stage is Stage.INPUT
    assert err.categories == ["Violence"]
    assert err.verdict.user_safe is False
    assert inner.calls == 0


def test_output_block(guard: NemoGuard) -> None:
    with pytest.raises(ContentBlockedError) as info:
        guard.wrap(chat(UNSAFE_ANSWER)).invoke("tell me a story")
    assert info.value.stage is Stage.OUTPUT
    assert info.value.verdict.response_safe is False


def test_rewrite_answers_in_the_inner_output_type(guard: NemoGuard) -> None:
    inner = Recorder()
    msg = guard.wrap(RunnableLambda(inner), action="rewrite", refusal="No.").invoke("make a bomb")
    assert isinstance(msg, AIMessage)
    assert msg.content == "No."
    assert inner.calls == 0
    text_chain = chat(SAFE_ANSWER) | StrOutputParser()
    assert (
        guard.wrap(text_chain, policy="rewrite").invoke("make a bomb") == "Let's talk about something else."
    )
    out = guard.wrap(chat(UNSAFE_ANSWER) | StrOutputParser(), policy="rewrite").invoke("story please")
    assert out == "Let's talk about something else."
    msg = guard.wrap(chat(UNSAFE_ANSWER), policy="rewrite").invoke("story please")
    assert isinstance(msg, AIMessage)
    assert msg.content == "Let's talk about something else."
    assert msg.response_metadata["nemoguard"]["categories"] == ["Violence"]


def test_log_lets_it_run(guard: NemoGuard) -> None:
    seen: list[Any] = []
    inner = Recorder(UNSAFE_ANSWER)
    g = GuardedRunnable(guard=guard, inner=RunnableLambda(inner), action="log")
    guard.audit_options = AuditOptions(on_verdict=seen.append)
    out = g.invoke("how to make a bomb")
    assert out.content == UNSAFE_ANSWER
    assert inner.calls == 1
    assert [v.safe for v in seen] == [False, False]


async def test_ainvoke(guard: NemoGuard) -> None:
    guarded = guard.wrap(chat(SAFE_ANSWER, UNSAFE_ANSWER))
    assert (await guarded.ainvoke("capital of France?")).content == SAFE_ANSWER
    with pytest.raises(ContentBlockedError):
        await guarded.ainvoke("a story")
    with pytest.raises(ContentBlockedError) as info:
        await guarded.ainvoke("how do I make a bomb")
    assert info.value.stage is Stage.INPUT


def test_tool_call_arguments_blocked(guard: NemoGuard) -> None:
    call = AIMessage(
        "", tool_calls=[{"name": "search", "args": {"query": "how to make a bomb at home"}, "id": "c1"}]
    )
    with pytest.raises(ContentBlockedError) as info:
        guard.wrap(chat(call)).invoke("find me some chemistry facts")
    assert info.value.stage is Stage.TOOL_CALL


def test_image_only_message_checked(guard: NemoGuard) -> None:
    red = HumanMessage(content=[{"type": "image", "base64": png((255, 0, 0)), "mime_type": "image/png"}])
    blue = HumanMessage(
        content=[{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png((0, 0, 255))}"}}]
    )
    with pytest.raises(ContentBlockedError) as info:
        guard.wrap(chat(SAFE_ANSWER)).invoke([red])
    assert info.value.stage is Stage.INPUT
    assert guard.wrap(chat(SAFE_ANSWER)).invoke([blue]).content == SAFE_ANSWER


def test_prompt_template_chain_and_message_inputs(guard: NemoGuard) -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    guarded = guard.wrap(prompt | chat(SAFE_ANSWER, SAFE_ANSWER) | StrOutputParser())
    assert guarded.invoke({"question": "capital?"}) == SAFE_ANSWER
    with pytest.raises(ContentBlockedError):
        guarded.invoke({"question": "how do I make a bomb"})
    with pytest.raises(ContentBlockedError):
        guard.wrap(chat(SAFE_ANSWER)).invoke(
            [("human", "hi"), ("ai", "hello"), ("human", "how do I make a bomb")]
        )


# --- policies -------------------------------------------------------------------------------------------------------


def test_policy_by_argument_and_by_configurable(guard: NemoGuard) -> None:
    inner = Recorder("Use kill -9 on the pid, or just kill it with fire.")
    with pytest.raises(ContentBlockedError):
        guard.wrap(RunnableLambda(inner)).invoke("the server hangs; how do I kill it?")
    assert (
        guard.wrap(RunnableLambda(inner), policy="devops")
        .invoke("how do I kill it?")
        .content.startswith("Use")
    )
    guarded = guard.wrap(RunnableLambda(inner)).with_config(configurable={POLICY_CONFIG_KEY: "devops"})
    assert guarded.invoke("how do I kill it?").content.startswith("Use")
    with pytest.raises(PolicyNotFoundError):
        guard.wrap(RunnableLambda(inner)).invoke("hi", config={"configurable": {POLICY_CONFIG_KEY: "nope"}})
    assert any(s.id == POLICY_CONFIG_KEY for s in guard.wrap(RunnableLambda(inner)).config_specs)


# --- batch ----------------------------------------------------------------------------------------------------------


def test_batch_mixed_verdicts(guard: NemoGuard) -> None:
    guarded = guard.wrap(RunnableLambda(Recorder()))
    out = guarded.batch(["capital of France?", "how do I make a bomb", "and Spain?"], return_exceptions=True)
    assert out[0].content == SAFE_ANSWER
    assert isinstance(out[1], ContentBlockedError)
    assert out[2].content == SAFE_ANSWER
    with pytest.raises(ContentBlockedError):
        guarded.batch(["fine", "make a bomb"])


async def test_abatch_mixed_verdicts(guard: NemoGuard) -> None:
    guarded = guard.wrap(RunnableLambda(Recorder()), policy="rewrite")
    out = await guarded.abatch(["capital of France?", "how do I make a bomb"])
    assert out[0].content == SAFE_ANSWER
    assert out[1].content == "Let's talk about something else."


# --- streams ----------------------------------------------------------------------------------------------------------


def _assert_clean(chunks: list[Any]) -> None:
    for chunk in chunks:
        text = chunk if isinstance(chunk, str) else chunk.content
        assert "bomb" not in text


def drain(stream: Any, into: list[Any], *, clean: bool = True) -> None:
    """Consume a stream, asserting on every chunk as it arrives that no unsafe text is in it."""
    for chunk in stream:
        if clean:
            _assert_clean([chunk])
        into.append(chunk)


async def adrain(stream: Any, into: list[Any], *, clean: bool = True) -> None:
    async for chunk in stream:
        if clean:
            _assert_clean([chunk])
        into.append(chunk)


def test_stream_holds_back_unsafe_text(guard: NemoGuard) -> None:
    guarded = guard.wrap(chat(UNSAFE_ANSWER), stream=SMALL)
    got: list[Any] = []
    with pytest.raises(ContentBlockedError) as info:
        drain(guarded.stream("a story please"), got)  # asserts on every chunk, as it arrives
    assert info.value.stage is Stage.OUTPUT
    assert got, "the safe windows before the unsafe one were released"
    assert "".join(c.content for c in got) in UNSAFE_ANSWER


def test_stream_safe_is_complete_and_chunked(guard: NemoGuard) -> None:
    got = list(guard.wrap(chat(SAFE_ANSWER), stream=SMALL).stream("capital?"))
    assert len(got) > 3
    assert "".join(c.content for c in got) == SAFE_ANSWER


def test_stream_rewrite_ends_with_refusal_chunk(guard: NemoGuard) -> None:
    got = list(guard.wrap(chat(UNSAFE_ANSWER), stream=SMALL, policy="rewrite").stream("story"))
    _assert_clean(got)
    assert isinstance(got[-1], AIMessageChunk)
    # text was released before the unsafe window: the refusal starts a paragraph of its own
    assert got[-1].content == "\n\nLet's talk about something else."
    assert UNSAFE_ANSWER.startswith("".join(c.content for c in got[:-1]))
    got = list(
        guard.wrap(chat(UNSAFE_ANSWER) | StrOutputParser(), stream=SMALL, policy="rewrite").stream("story")
    )
    _assert_clean(got)
    assert got[-1] == "\n\nLet's talk about something else."
    got = list(guard.wrap(chat(SAFE_ANSWER), policy="rewrite").stream("make a bomb"))
    assert [c.content for c in got] == ["Let's talk about something else."]


def test_stream_input_block(guard: NemoGuard) -> None:
    with pytest.raises(ContentBlockedError) as info:
        list(guard.wrap(chat(SAFE_ANSWER)).stream("how do I make a bomb"))
    assert info.value.stage is Stage.INPUT


def test_transform(guard: NemoGuard) -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    chain = prompt | guard.wrap(chat(UNSAFE_ANSWER), stream=SMALL)
    got: list[Any] = []
    with pytest.raises(ContentBlockedError):
        drain(chain.stream({"q": "story"}), got)  # the sequence drives GuardedRunnable.transform
    got2 = list(guard.wrap(chat(SAFE_ANSWER), stream=SMALL).transform(iter(["capi", "tal?"])))
    assert "".join(c.content for c in got2) == SAFE_ANSWER


def test_pass_through_is_opt_in_and_leaks(guard: NemoGuard) -> None:
    opts = StreamOptions(window_chars=40, overlap_chars=10, first_window_chars=20, pass_through=True)
    got: list[Any] = []
    with pytest.raises(ContentBlockedError):
        drain(guard.wrap(chat(UNSAFE_ANSWER), stream=opts).stream("story"), got, clean=False)
    assert "bomb" in "".join(c.content for c in got)  # documented: the unsafe text reached the reader


async def test_astream_holds_back(guard: NemoGuard) -> None:
    guarded = guard.wrap(chat(UNSAFE_ANSWER, SAFE_ANSWER), stream=SMALL)
    got: list[Any] = []
    with pytest.raises(ContentBlockedError):
        await adrain(guarded.astream("story"), got)
    assert got
    safe = [c async for c in guarded.astream("capital?")]
    assert "".join(c.content for c in safe) == SAFE_ANSWER


async def test_atransform(guard: NemoGuard) -> None:
    async def chunks() -> Any:
        yield "sto"
        yield "ry"

    got: list[Any] = []
    with pytest.raises(ContentBlockedError):
        await adrain(guard.wrap(chat(UNSAFE_ANSWER), stream=SMALL).atransform(chunks()), got)
    out = [
        c async for c in guard.wrap(chat(UNSAFE_ANSWER), stream=SMALL, policy="rewrite").atransform(chunks())
    ]
    _assert_clean(out)
    assert out[-1].content == "\n\nLet's talk about something else."


# --- tracing, events, config ------------------------------------------------------------------------------------------


class Events(BaseCallbackHandler):
    def __init__(self) -> None:
        self.custom: list[tuple[str, Any]] = []
        self.llm_tags: list[list[str]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.custom.append((name, data))

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, tags: list[str] | None = None, **kw: Any
    ) -> None:
        self.llm_tags.append(list(tags or []))


def test_callbacks_tags_metadata_run_name_propagate(guard: NemoGuard) -> None:
    runs = RunCollectorCallbackHandler()
    events = Events()
    config = {"callbacks": [runs, events], "tags": ["t1"], "metadata": {"m": 1}, "run_name": "GuardedChat"}
    # a GuardedRunnable around a model (guard.wrap of a chat model is a GuardedChatModel: test_guarded_chat_model.py)
    GuardedRunnable(guard=guard, inner=chat(SAFE_ANSWER)).invoke("capital?", config=config)
    (root,) = runs.traced_runs
    assert root.name == "GuardedChat"
    children = {r.name: r for r in root.child_runs}
    assert set(children) == {"NemoGuard:input", "GenericFakeChatModel", "NemoGuard:output"}
    check = children["NemoGuard:input"]
    assert check.outputs["verdict"]["safe"] is True
    assert check.extra["metadata"]["nemoguard_safe"] is True
    assert check.extra["metadata"]["nemoguard_stage"] == "input"
    assert check.extra["metadata"]["m"] == 1
    assert "t1" in check.tags
    model_run = children["GenericFakeChatModel"]
    assert "t1" in model_run.tags and UNCHECKED_TAG in model_run.tags
    assert [n for n, _ in events.custom] == [VERDICT_EVENT, VERDICT_EVENT]
    assert [d["stage"] for _, d in events.custom] == ["input", "output"]


def test_blocked_check_run_records_the_verdict(guard: NemoGuard) -> None:
    runs = RunCollectorCallbackHandler()
    with pytest.raises(ContentBlockedError):
        GuardedRunnable(guard=guard, inner=chat(SAFE_ANSWER)).invoke("make a bomb", config={"callbacks": [runs]})
    check = runs.traced_runs[0].child_runs[0]
    assert check.name == "NemoGuard:input"
    assert check.outputs["allowed"] is False
    assert check.extra["metadata"]["nemoguard_categories"] == ["Violence"]


async def test_astream_events_custom_events_and_no_guard_model_events(guard: NemoGuard) -> None:
    guarded = GuardedRunnable(guard=guard, inner=chat(UNSAFE_ANSWER), stream=SMALL, policy="rewrite", name="Guarded")
    events = [e async for e in guarded.astream_events("story", version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert custom
    assert all(e["name"] == VERDICT_EVENT for e in custom)
    assert custom[-1]["data"]["allowed"] is False
    model_events = [e for e in events if e["event"].startswith("on_chat_model")]
    assert {e["name"] for e in model_events} == {"GenericFakeChatModel"}  # the guard's call is not a model
    assert not any("Safety" in json.dumps(e["data"], default=str) for e in model_events)
    guard_chunks = [
        e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream" and e["name"] == "Guarded"
    ]
    _assert_clean(guard_chunks)
    filtered = [
        e
        async for e in GuardedRunnable(
            guard=guard, inner=chat(UNSAFE_ANSWER), stream=SMALL, policy="rewrite"
        ).astream_events("story", version="v2", exclude_tags=[UNCHECKED_TAG]
        )
    ]
    assert not [e for e in filtered if e["event"] == "on_chat_model_stream"]
    assert "bomb" not in json.dumps([e["data"].get("chunk") for e in filtered], default=str)


# --- parallel ------------------------------------------------------------------------------------------------------------


@SLOW
async def test_parallel_block_cancels_inner(slow_sim: SimulatorServer) -> None:
    guard = NemoGuard(base_url=slow_sim.base_url, cache=CacheOptions(size=0))
    state = {"started": False, "cancelled": False, "finished": False}

    async def slow(_: Any) -> AIMessage:
        state["started"] = True
        try:
            await asyncio.sleep(2)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise
        state["finished"] = True
        return AIMessage(SAFE_ANSWER)

    guarded = guard.wrap(RunnableLambda(slow), parallel=True)
    t0 = time.perf_counter()
    with pytest.raises(ContentBlockedError):
        await guarded.ainvoke("how do I make a bomb")
    assert time.perf_counter() - t0 < 1.0
    assert state == {"started": True, "cancelled": True, "finished": False}


@SLOW
async def test_parallel_overlaps_and_releases_after_verdict(slow_sim: SimulatorServer) -> None:
    guard = NemoGuard(base_url=slow_sim.base_url, cache=CacheOptions(size=0))
    finished_at: list[float] = []

    async def inner(_: Any) -> str:
        await asyncio.sleep(0.15)
        finished_at.append(time.perf_counter())
        return SAFE_ANSWER

    guarded = guard.wrap(RunnableLambda(inner), parallel=True, check_output=False)
    t0 = time.perf_counter()
    assert await guarded.ainvoke("capital?") == SAFE_ANSWER
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.28, elapsed  # 150 ms check beside 150 ms inner, not one after the other


@SLOW
def test_parallel_sync_block_returns_without_waiting(slow_sim: SimulatorServer) -> None:
    guard = NemoGuard(base_url=slow_sim.base_url, cache=CacheOptions(size=0))

    def slow(_: Any) -> AIMessage:
        time.sleep(1.0)
        return AIMessage(UNSAFE_ANSWER)

    t0 = time.perf_counter()
    with pytest.raises(ContentBlockedError):
        guard.wrap(RunnableLambda(slow), parallel=True).invoke("how do I make a bomb")
    assert time.perf_counter() - t0 < 0.8
    assert guard.wrap(RunnableLambda(Recorder()), parallel=True).invoke("capital?").content == SAFE_ANSWER


@SLOW
async def test_parallel_stream_holds_chunks_until_input_verdict(slow_sim: SimulatorServer) -> None:
    guard = NemoGuard(base_url=slow_sim.base_url, cache=CacheOptions(size=0))
    guarded = guard.wrap(chat(SAFE_ANSWER), parallel=True, check_output=False)
    released: list[Any] = []
    with pytest.raises(ContentBlockedError):
        await adrain(guarded.astream("how do I make a bomb"), released)
    assert released == [], "a chunk was released before the blocking input verdict"
    got = [c async for c in guard.wrap(chat(SAFE_ANSWER), parallel=True).astream("capital?")]
    assert "".join(c.content for c in got) == SAFE_ANSWER
    with pytest.raises(ContentBlockedError):
        drain(guard.wrap(chat(SAFE_ANSWER), parallel=True).stream("make a bomb"), released)
    assert released == []


# --- fallbacks -----------------------------------------------------------------------------------------------------------


def test_with_fallbacks(guard: NemoGuard) -> None:
    fallback = RunnableLambda(lambda _: AIMessage("Fallback answer."))
    guarded = guard.wrap(chat(UNSAFE_ANSWER, UNSAFE_ANSWER))
    # narrowed to blocks: a block answers from the fallback
    assert guarded.with_fallbacks([fallback], exceptions_to_handle=(ContentBlockedError,)).invoke(
        "story"
    ).content == ("Fallback answer.")
    # narrowed to something else: the block propagates
    with pytest.raises(ContentBlockedError):
        guarded.with_fallbacks([fallback], exceptions_to_handle=(TimeoutError,)).invoke("story")


# --- outages (scripted transport) and unit behaviour --------------------------------------------------------------------------


def _mock_guard(handler: Any, **kwargs: Any) -> NemoGuard:
    async def ahandler(request: httpx.Request) -> httpx.Response:
        return handler(request)

    return NemoGuard(
        base_url="http://guard.test/v1",
        max_retries=0,
        transport=TransportOptions(
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(ahandler)),
        ),
        **kwargs,
    )


def test_outage_fails_closed_and_says_so() -> None:
    guard = _mock_guard(lambda r: httpx.Response(503, text="down"))
    inner = Recorder()
    with pytest.raises(GuardUnavailableError) as info:
        guard.wrap(RunnableLambda(inner)).invoke("hello")
    assert not isinstance(info.value, ContentBlockedError)  # an outage is not a policy decision
    assert "guard unavailable" in str(info.value)
    assert inner.calls == 0


def test_outage_fail_open_runs_inner() -> None:
    guard = _mock_guard(lambda r: httpx.Response(503, text="down"), on_error="allow")
    assert guard.wrap(RunnableLambda(Recorder())).invoke("hello").content == SAFE_ANSWER


def test_request_bodies_carry_prompt_then_response(sim: SimulatorServer) -> None:
    guard = NemoGuard(base_url=sim.base_url)
    guard.wrap(RunnableLambda(Recorder())).invoke([SystemMessage("sys"), HumanMessage("question?")])
    bodies = sim.requests()
    # input: the user turn and (on its own, so it caches) the system message; then the output
    inputs = sorted(b["messages"][0]["content"] for b in bodies[:2])
    assert inputs == ["question?", "sys"]
    assert all([m["role"] for m in b["messages"]] == ["user"] for b in bodies[:2])
    assert [m["role"] for m in bodies[2]["messages"]] == ["user", "assistant"]
    assert bodies[2]["messages"][0]["content"] == "question?"
    assert bodies[2]["messages"][1]["content"] == SAFE_ANSWER


def test_check_flags_turn_off_checks(sim: SimulatorServer) -> None:
    guard = NemoGuard(base_url=sim.base_url)
    guard.wrap(RunnableLambda(Recorder()), check_input=False, check_output=False).invoke("x")
    assert sim.requests() == []
    assert isinstance(guard.wrap(RunnableLambda(Recorder())), GuardedRunnable)


def test_action_override_is_not_served_from_the_cache(sim: SimulatorServer) -> None:
    guard = NemoGuard(base_url=sim.base_url)  # cache on
    with pytest.raises(ContentBlockedError):
        guard.wrap(RunnableLambda(Recorder())).invoke("how do I make a bomb")
    out = guard.wrap(RunnableLambda(Recorder()), action="rewrite", refusal="No.").invoke(
        "how do I make a bomb"
    )
    assert out.content == "No."
