"""The stream loops against the interface simulator: windows judged while the stream goes on (sync and async),
released in order and never before they are judged, bounded, closed at once when the reader stops; and a
rewrite after released text ending it on a paragraph of its own (StreamGuard, GuardedRunnable, LiteLLM hook).

The simulator flags e.g. "make a bomb" and "kill" and answers after ``latency_ms``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from langchain_nemoguard import CacheOptions, ContentBlockedError, NemoGuard, Policy, PolicySet, StreamOptions
from langchain_nemoguard.core.streaming import StreamGuard, StreamRefusal
from langchain_nemoguard.simulator import SimulatorServer

SLOW = pytest.mark.nemoguard_simulator(latency_ms=150)
WORDS = [f"w{i:02d}" for i in range(48)]  # 48 chunks of 4 characters, every one unique
ANSWER = "".join(" " + w for w in WORDS)
SMALL = StreamOptions(window_chars=40, overlap_chars=8, first_window_chars=12)
REFUSAL = "Let's talk about something else."
UNSAFE = "Sure, here it is. First you gather the parts, then you make a bomb by packing it tightly."


def _guard(sim: SimulatorServer, **kw: Any) -> NemoGuard:
    policies = PolicySet(
        {
            "default": Policy(name="default"),
            "rewrite": Policy(name="rewrite", actions={"*": "rewrite"}, refusal=REFUSAL),
        },
        default="default",
    )
    return NemoGuard(base_url=sim.base_url, cache=CacheOptions(size=0), policies=policies, **kw)


class Probe:
    """Wraps a guard's ``check``/``acheck``: each check's interval, the most in flight at once, and how far
    into ``answer`` the judged windows reach (updated before the verdict goes back to the stream)."""

    def __init__(self, guard: NemoGuard, answer: str) -> None:
        self.answer = answer
        self.lock = threading.Lock()
        self.intervals: list[tuple[float, float]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.covered = 0
        real, areal = guard.check, guard.acheck

        def check(**kw: Any) -> Any:
            start = self._start()
            try:
                return real(**kw)
            finally:
                self._end(start, kw)

        async def acheck(**kw: Any) -> Any:
            start = self._start()
            try:
                return await areal(**kw)
            finally:
                self._end(start, kw)

        guard.check = check  # type: ignore[method-assign]
        guard.acheck = acheck  # type: ignore[method-assign]

    def _start(self) -> float:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return time.perf_counter()

    def _end(self, start: float, kw: dict[str, Any]) -> None:
        with self.lock:
            self.in_flight -= 1
            self.intervals.append((start, time.perf_counter()))
            judged = kw["response"]
            at = self.answer.find(judged)
            if at >= 0:
                self.covered = max(self.covered, at + len(judged))

    def pulls_while_judging(self, pulls: list[float]) -> int:
        return sum(1 for t in pulls if any(a < t < b for a, b in self.intervals))


def _source(chunks: list[str], pulls: list[float], pause: float = 0.01) -> Iterator[str]:
    for chunk in chunks:
        time.sleep(pause)
        pulls.append(time.perf_counter())
        yield chunk


async def _asource(chunks: list[str], pulls: list[float], pause: float = 0.01) -> AsyncIterator[str]:
    for chunk in chunks:
        await asyncio.sleep(pause)
        pulls.append(time.perf_counter())
        yield chunk


CHUNKS = [" " + w for w in WORDS]


# --- pipelined, in order, never unjudged -----------------------------------------------------------------------


@SLOW
def test_sync_stream_keeps_pulling_while_windows_are_judged(nemoguard_simulator: SimulatorServer) -> None:
    guard = _guard(nemoguard_simulator)
    probe = Probe(guard, ANSWER)
    sg: StreamGuard[str] = StreamGuard(guard, prompt="count", options=SMALL)
    pulls: list[float] = []
    released = ""
    for item in sg.iter(_source(CHUNKS, pulls), str):
        assert isinstance(item, str)
        released += item
        assert len(released) <= probe.covered, "a chunk was released before its window was judged"
    assert released == ANSWER  # every chunk, once, in order
    assert len(sg.verdicts) == len(probe.intervals) >= 5
    # the blocking loop pulled nothing while it judged; the pipelined one keeps the model going
    assert probe.pulls_while_judging(pulls) >= len(CHUNKS) // 2
    assert 2 <= probe.max_in_flight <= SMALL.max_pending_windows


@SLOW
async def test_async_stream_keeps_pulling_while_windows_are_judged(
    nemoguard_simulator: SimulatorServer,
) -> None:
    guard = _guard(nemoguard_simulator)
    probe = Probe(guard, ANSWER)
    sg: StreamGuard[str] = StreamGuard(guard, prompt="count", options=SMALL)
    pulls: list[float] = []
    released = ""
    async for item in sg.aiter(_asource(CHUNKS, pulls), str):
        assert isinstance(item, str)
        released += item
        assert len(released) <= probe.covered, "a chunk was released before its window was judged"
    assert released == ANSWER
    assert probe.pulls_while_judging(pulls) >= len(CHUNKS) // 2
    assert 2 <= probe.max_in_flight <= SMALL.max_pending_windows
    await guard.aclose()


@SLOW
@pytest.mark.parametrize("pending", [1, 2])
def test_sync_checks_in_flight_are_bounded(nemoguard_simulator: SimulatorServer, pending: int) -> None:
    guard = _guard(nemoguard_simulator)
    probe = Probe(guard, ANSWER)
    opts = StreamOptions(window_chars=8, overlap_chars=0, first_window_chars=8, max_pending_windows=pending)
    sg: StreamGuard[str] = StreamGuard(guard, options=opts)
    released = "".join(str(c) for c in sg.iter(_source(CHUNKS, [], pause=0.001), str))
    assert released == ANSWER
    assert probe.max_in_flight == pending  # a fast model and a slow guard: the bound is what holds it


@SLOW
@pytest.mark.parametrize("pending", [1, 2])
async def test_async_checks_in_flight_are_bounded(nemoguard_simulator: SimulatorServer, pending: int) -> None:
    guard = _guard(nemoguard_simulator)
    probe = Probe(guard, ANSWER)
    opts = StreamOptions(window_chars=8, overlap_chars=0, first_window_chars=8, max_pending_windows=pending)
    sg: StreamGuard[str] = StreamGuard(guard, options=opts)
    released = "".join([str(c) async for c in sg.aiter(_asource(CHUNKS, [], pause=0.001), str)])
    assert released == ANSWER
    assert probe.max_in_flight == pending
    await guard.aclose()


def test_sync_unsafe_window_is_never_released_and_later_ones_not_either(
    nemoguard_simulator: SimulatorServer,
) -> None:
    guard = _guard(nemoguard_simulator)
    text = UNSAFE + " And then some more text that is perfectly fine to read, for a while longer."
    chunks = [text[i : i + 3] for i in range(0, len(text), 3)]
    sg: StreamGuard[str] = StreamGuard(guard, options=SMALL)
    released: list[str] = []
    with pytest.raises(ContentBlockedError):
        _drain_clean(sg.iter(_source(chunks, [], pause=0.0), str), released)
    assert released and text.startswith("".join(released))


def _drain_clean(items: Iterator[Any], into: list[str]) -> None:
    """Consume a stream, asserting on every chunk as it arrives that no unsafe text has been released."""
    for item in items:
        into.append(str(item))
        assert "bomb" not in "".join(into)


# --- a rewrite after released text ends on a paragraph of its own ----------------------------------------------


def test_sync_refusal_after_released_text_starts_a_paragraph(nemoguard_simulator: SimulatorServer) -> None:
    guard = _guard(nemoguard_simulator)
    chunks = [UNSAFE[i : i + 3] for i in range(0, len(UNSAFE), 3)]
    items = list(StreamGuard(guard, policy="rewrite", options=SMALL).iter(iter(chunks), str))
    refusal = items[-1]
    assert isinstance(refusal, StreamRefusal) and refusal.after_text
    released = "".join(str(i) for i in items[:-1])
    assert released and UNSAFE.startswith(released) and "bomb" not in released
    assert refusal.text == "\n\n" + REFUSAL
    # unsafe in the first window: nothing released, the refusal alone
    first = list(StreamGuard(guard, policy="rewrite").iter(iter(["make a bomb", " now"]), str))
    assert len(first) == 1 and isinstance(first[0], StreamRefusal)
    assert first[0].text == REFUSAL and not first[0].after_text


async def test_async_refusal_after_a_line_break_adds_one_newline(
    nemoguard_simulator: SimulatorServer,
) -> None:
    guard = _guard(nemoguard_simulator)
    chunks = ["All fine here.\n", "then make a bomb", " tightly"]
    opts = StreamOptions(window_chars=20, overlap_chars=0, first_window_chars=15)
    items = [
        i
        async for i in StreamGuard(guard, policy="rewrite", options=opts).aiter(_asource(chunks, [], 0), str)
    ]
    assert items[0] == "All fine here.\n"
    refusal = items[-1]
    assert isinstance(refusal, StreamRefusal) and refusal.text == "\n" + REFUSAL
    await guard.aclose()


class Recorded(BaseChatModel):
    """Streams ``words`` (one chunk each, ``pause_s`` apart) and records every pull and when it was closed."""

    words: list[str]
    pause_s: float = 0.0
    events: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recorded-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage("".join(self.words)))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> Iterator[ChatGenerationChunk]:
        try:
            for word in self.words:
                time.sleep(self.pause_s)
                self.events.append("pull")
                yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        finally:
            self.events.append("closed")

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        try:
            for word in self.words:
                await asyncio.sleep(self.pause_s)
                self.events.append("pull")
                yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        finally:
            self.events.append("closed")


def _words(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_guarded_stream_rewrite_ends_on_a_new_paragraph(nemoguard_simulator: SimulatorServer) -> None:
    guard = _guard(nemoguard_simulator)
    got = list(guard.wrap(Recorded(words=_words(UNSAFE)), stream=SMALL, policy="rewrite").stream("story"))
    assert all("bomb" not in c.content for c in got)
    released = "".join(c.content for c in got[:-1])
    assert released and UNSAFE.startswith(released)
    assert got[-1].content == "\n\n" + REFUSAL
    assert got[-1].response_metadata["nemoguard"]["safe"] is False


async def test_guarded_astream_rewrite_ends_on_a_new_paragraph(nemoguard_simulator: SimulatorServer) -> None:
    guard = _guard(nemoguard_simulator)
    model = Recorded(words=_words(UNSAFE))
    got = [c async for c in guard.wrap(model, stream=SMALL, policy="rewrite").astream("story")]
    assert all("bomb" not in c.content for c in got)
    assert "".join(c.content for c in got) == "".join(c.content for c in got[:-1]) + "\n\n" + REFUSAL
    await guard.aclose()


# --- a reader that stops closes the inner stream at once ----------------------------------------------------------


def test_sync_break_closes_the_inner_stream_before_the_loop_goes_on(
    nemoguard_simulator: SimulatorServer,
) -> None:
    guard = _guard(nemoguard_simulator)
    model = Recorded(words=_words(ANSWER * 4), pause_s=0.002)
    for _chunk in guard.wrap(model, stream=SMALL).stream("count"):
        break
    assert model.events[-1] == "closed", "the inner stream's finally ran before the break returned"
    pulls = model.events.count("pull")
    assert pulls < len(model.words)  # it stopped early
    time.sleep(0.2)
    assert model.events.count("pull") == pulls and model.events.count("closed") == 1  # and nothing after


@SLOW
def test_sync_break_while_checks_are_pending_returns_without_waiting(
    nemoguard_simulator: SimulatorServer,
) -> None:
    guard = _guard(nemoguard_simulator)
    model = Recorded(words=_words(ANSWER * 4), pause_s=0.002)
    stream = guard.wrap(model, stream=SMALL, check_input=False).stream("count")
    next(stream)  # the first window is out; the next ones are being judged
    t0 = time.perf_counter()
    stream.close()
    assert time.perf_counter() - t0 < 0.1  # the pending checks were dropped, not waited for
    assert model.events[-1] == "closed"


async def test_async_aclose_closes_the_inner_stream_at_once(nemoguard_simulator: SimulatorServer) -> None:
    guard = _guard(nemoguard_simulator)
    model = Recorded(words=_words(ANSWER * 4), pause_s=0.002)
    stream = guard.wrap(model, stream=SMALL).astream("count")
    async for _chunk in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert model.events[-1] == "closed"
    pulls = model.events.count("pull")
    assert pulls < len(model.words)
    await asyncio.sleep(0.2)
    assert model.events.count("pull") == pulls and model.events.count("closed") == 1
    await guard.aclose()


async def test_async_releases_a_judged_window_while_the_model_pauses(
    nemoguard_simulator: SimulatorServer,
) -> None:
    guard = _guard(nemoguard_simulator)

    async def paused() -> AsyncIterator[str]:
        yield "The first window is here. "
        await asyncio.sleep(1.0)  # e.g. the model thinking
        yield "And the rest."

    t0 = time.perf_counter()
    seen: list[tuple[float, str]] = []
    async for item in StreamGuard(guard, options=SMALL).aiter(paused(), str):
        seen.append((time.perf_counter() - t0, str(item)))
    assert [t for _, t in seen] == ["The first window is here. ", "And the rest."]
    assert seen[0][0] < 0.5  # released once judged, not when the next chunk came
    await guard.aclose()
