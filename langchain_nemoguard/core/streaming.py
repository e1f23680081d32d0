"""Streaming output: the sync and async loops that hold text back until its window has been judged.

The window bookkeeping is pure and lives in :mod:`.windows` (``HoldbackBuffer``); the pass / refuse / block
decision is :attr:`Verdict.outcome`. What is left here is I/O: pulling chunks, judging windows, releasing them.

Used by both the LangChain and the LiteLLM adapters, which differ only in their chunk types. The caller hands
in an iterator of its own chunks and a function that extracts each chunk's text; out come the same chunks,
released window by window once each window is judged safe (or allowed by a ``log`` action).

* Hold-back (default): no chunk is yielded before the window containing it has been judged, and windows are
  released in order. Windows start small and grow (``StreamOptions``: a first window of a few dozen characters,
  each next one twice as large up to ``window_chars``), and each is judged while the stream goes on, so the
  first text arrives about one guard call after the first window filled, and later windows are released
  about as fast as the model fills them. The async loop waits on the next chunk and the oldest verdict at
  once; the sync loop judges windows in a small thread pool owned by the stream and releases every judged
  window each time it has pulled a chunk (and all of them, in order, at the end). At most
  ``max_pending_windows`` windows are judged at once: with that many in flight the loop stops pulling until
  the oldest is judged.
* Pass-through (``pass_through=True``): chunks are yielded at once and windows are judged beside the stream;
  an unsafe window stops the stream late. Lower latency, and unsafe text can reach the reader. Opt-in only.

Each window is judged as an assistant response to the user's prompt, with ``overlap_chars`` of the previous
window in front of it so a phrase cut by a window boundary is still seen whole.

On an unsafe window: ``block`` raises :class:`ContentBlockedError`; ``rewrite`` yields one
:class:`StreamRefusal` (the adapter turns it into its own chunk) and ends; ``log`` releases the text. A refusal
that follows released text starts a new paragraph (:func:`refusal_after`): the reader sees the released text
end, then the refusal on its own, never the refusal glued onto half a sentence.

Closing the stream early (a consumer that stops reading) closes the upstream at once, cancels the checks not
yet started and drops the verdicts still on their way (each check is bounded by its own deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ContentBlockedError, Stage
from .verdict import Outcome, Verdict
from .windows import HoldbackBuffer, StreamOptions, Window

if TYPE_CHECKING:
    from .guard import NemoGuard
    from .policy import Policy

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class StreamRefusal:
    """Yielded once, last, when a window was unsafe under a ``rewrite`` action.

    ``text`` is what the adapter appends to the stream: the refusal, after a paragraph break when text was
    already released (see :func:`refusal_after`); ``after_text`` says whether any was."""

    text: str
    verdict: Verdict
    after_text: bool = False


def refusal_after(released_tail: str, refusal: str) -> str:
    """The refusal as it continues a stream whose released text ends with ``released_tail``.

    Nothing released (``""``): the refusal alone. Otherwise it starts a new paragraph: a blank
    line after released text (``"\n\n" + refusal``), one newline after text that ends a line, none after a
    paragraph break. The released text is not taken back (the reader has it); it ends where the last judged
    window ended, and the refusal stands apart from it.
    """
    if not released_tail or released_tail.endswith("\n\n"):
        return refusal
    if released_tail.endswith("\n"):
        return "\n" + refusal
    return "\n\n" + refusal


class StreamGuard(Generic[C]):
    """Guards one stream of assistant output. Create one per stream.

    Args:
        guard: The guard that judges each window.
        prompt: The user's prompt, sent as context with every window.
        policy: A policy or a policy name (see :meth:`NemoGuard.policy_for`); None: the guard's default.
        options: Window sizes and pass-through (None: the guard's ``stream`` options).
        stage: The stage the windows are judged at (output, or tool-call arguments).
        error_cls: The exception a block raises (an adapter may raise its framework's subclass).
        decide: The adapter's own decision for a judged window (None: release; a refusal: end with it; or
            raise), e.g. one that follows an ``exit_behavior`` (:func:`.verdict.settle`). None: the default
            rule below (:attr:`Verdict.outcome`, blocks raising ``error_cls``).
    """

    def __init__(
        self,
        guard: NemoGuard,
        *,
        prompt: str = "",
        policy: Policy | str | None = None,
        options: StreamOptions | None = None,
        stage: Stage = Stage.OUTPUT,
        error_cls: type[ContentBlockedError] = ContentBlockedError,
        decide: Callable[[Verdict], StreamRefusal | None] | None = None,
    ) -> None:
        self.guard = guard
        self.error_cls = error_cls
        self.decide = decide
        self.prompt = prompt
        self.policy = guard.policy_for(policy)
        self.options = options or guard.stream_options
        self.stage = stage
        self.verdicts: list[Verdict] = []
        self._tail = ""  # the last characters released, once any text other than whitespace was

    @property
    def blocked(self) -> Verdict | None:
        """The first verdict that did not let its window pass, if any."""
        return next((v for v in self.verdicts if not v.allowed), None)

    # --- the decision and the release, shared ------------------------------------------------------------------

    def _decide(self, verdict: Verdict) -> StreamRefusal | None:
        """None: release. A refusal: stop with it. Raises for ``block``."""
        self.verdicts.append(verdict)
        if self.decide is not None:
            own = self.decide(verdict)
            return None if own is None else self._refusal(own.text, own.verdict)
        outcome = verdict.outcome
        if outcome is Outcome.PASS:
            return None
        if outcome is Outcome.REFUSE:
            return self._refusal(self.policy.refusal, verdict)
        raise self.error_cls(verdict, self.stage)

    def _refusal(self, text: str, verdict: Verdict) -> StreamRefusal:
        """The refusal that ends the stream, set apart from the text already released."""
        return StreamRefusal(refusal_after(self._tail, text), verdict, bool(self._tail))

    def _released(self, text: str) -> None:
        """Note text that reached the reader (for where a refusal starts)."""
        if text and (self._tail or text.strip()):
            self._tail = (self._tail + text)[-2:]

    def _release(self, window: Window[C]) -> list[C]:
        """The chunks a judged window releases (none in pass-through: they went out as they came)."""
        if self.options.pass_through:
            return []
        self._released(window.new_text)
        return window.chunks

    def _check_kwargs(self, window: Window[C]) -> dict[str, Any]:
        return {"prompt": self.prompt, "response": window.text, "policy": self.policy, "stage": self.stage}

    # --- sync ---------------------------------------------------------------------------------------------------

    def _check(self, window: Window[C]) -> Verdict:
        return self.guard.check(**self._check_kwargs(window))

    def iter(self, chunks: Iterable[C], text_of: Callable[[C], str]) -> Iterator[C | StreamRefusal]:
        """Yield ``chunks`` window by window once judged; a refusal (rewrite) comes last; a block raises.

        Windows are judged in a thread pool owned by this stream (at most ``max_pending_windows`` at once)
        while the loop keeps pulling chunks; judged windows are released, in order, after each chunk pulled.
        """
        buf: HoldbackBuffer[C] = HoldbackBuffer(self.options)
        source = iter(chunks)
        queue: deque[tuple[Future[Verdict] | None, Window[C]]] = deque()
        pool: ThreadPoolExecutor | None = None
        limit = self.options.max_pending_windows
        pass_through = self.options.pass_through

        def enqueue(window: Window[C]) -> None:
            nonlocal pool
            future: Future[Verdict] | None = None
            if window.text.strip():
                if pool is None:
                    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="nemoguard-stream")
                # each check runs in a copy of the caller's context (tracing spans, LangChain's config)
                future = pool.submit(contextvars.copy_context().run, self._check, window)
            queue.append((future, window))

        def release(keep: int) -> Iterator[C | StreamRefusal]:
            """Release judged windows in order; wait for the oldest while more than ``keep`` are pending."""
            while queue:
                future, window = queue[0]
                if future is not None and not future.done() and len(queue) <= keep:
                    return
                queue.popleft()
                if future is not None:
                    refusal = self._decide(future.result())
                    if refusal is not None:
                        yield refusal
                        return
                yield from self._release(window)

        try:
            for chunk in source:
                text = text_of(chunk) or ""
                if pass_through:
                    self._released(text)
                    yield chunk
                window = buf.push(chunk, text)
                if window is not None:
                    enqueue(window)
                for item in release(limit - 1):
                    yield item
                    if isinstance(item, StreamRefusal):
                        return
            window = buf.flush()
            if window is not None:
                enqueue(window)
            for item in release(-1):
                yield item
                if isinstance(item, StreamRefusal):
                    return
        finally:
            # the upstream first (a consumer that stopped reading stops the model now), then the checks
            close = getattr(source, "close", None)
            try:
                if close is not None:
                    close()
            finally:
                for future, _ in queue:
                    if future is not None:
                        future.cancel()
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)

    # --- async --------------------------------------------------------------------------------------------------

    async def aiter(
        self, chunks: AsyncIterable[C], text_of: Callable[[C], str]
    ) -> AsyncIterator[C | StreamRefusal]:
        """The async twin of :meth:`iter`: waits on the next chunk and the oldest verdict at once, so each
        window is released as soon as it is judged."""
        buf: HoldbackBuffer[C] = HoldbackBuffer(self.options)
        source = aiter(chunks)
        queue: deque[tuple[asyncio.Task[Verdict] | None, Window[C]]] = deque()
        next_chunk: asyncio.Task[C] | None = None
        exhausted = False
        pass_through = self.options.pass_through
        limit = self.options.max_pending_windows

        def enqueue(window: Window[C]) -> None:
            task = (
                asyncio.ensure_future(self.guard.acheck(**self._check_kwargs(window)))
                if window.text.strip()
                else None
            )
            queue.append((task, window))

        def take(chunk: C) -> bool:
            """Buffer a pulled chunk; True when it goes out at once (pass-through)."""
            text = text_of(chunk) or ""
            full = buf.push(chunk, text)
            if full is not None:
                enqueue(full)
            if pass_through:
                self._released(text)
            return pass_through

        def end() -> None:
            nonlocal exhausted
            exhausted = True
            last = buf.flush()
            if last is not None:
                enqueue(last)

        try:
            while True:
                # release judged windows, in order
                while queue and (queue[0][0] is None or queue[0][0].done()):
                    task, window = queue.popleft()
                    if task is not None:
                        refusal = self._decide(task.result())
                        if refusal is not None:
                            yield refusal
                            return
                    for c in self._release(window):
                        yield c
                if exhausted and not queue:
                    return
                head = queue[0][0] if queue else None  # the oldest verdict still on its way, if any
                # with max_pending_windows in flight, stop pulling until the oldest is judged
                if next_chunk is None and not exhausted and len(queue) < limit:
                    if head is None:
                        # no verdict to wait for: pull directly (no task and no wait per chunk)
                        try:
                            chunk = await anext(source)
                        except StopAsyncIteration:
                            end()
                            continue
                        if take(chunk):
                            yield chunk
                        continue
                    next_chunk = asyncio.ensure_future(anext(source))
                waiting: set[asyncio.Future[Any]] = {t for t in (head, next_chunk) if t is not None}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if next_chunk is not None and next_chunk.done():
                    pulled, next_chunk = next_chunk, None
                    try:
                        chunk = pulled.result()
                    except StopAsyncIteration:
                        end()
                        continue
                    if take(chunk):
                        yield chunk
        finally:
            pending = [t for t, _ in queue if t is not None and not t.done()]
            if next_chunk is not None and not next_chunk.done():
                pending.append(next_chunk)  # type: ignore[arg-type]
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(BaseException):
                    await t
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


__all__ = ["StreamGuard", "StreamOptions", "StreamRefusal", "refusal_after"]
