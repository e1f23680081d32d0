"""Streaming output: the sync and async loops that hold text back until its window has been judged.

The window bookkeeping is pure and lives in :mod:`.windows` (``HoldbackBuffer``); the pass / refuse / block
decision is :attr:`Verdict.outcome`. What is left here is I/O: pulling chunks, judging windows, releasing them.

Used by both the LangChain and the LiteLLM adapters, which differ only in their chunk types. The caller hands
in an iterator of its own chunks and a function that extracts each chunk's text; out come the same chunks,
released window by window once each window is judged safe (or allowed by a ``log`` action).

* Hold-back (default): no chunk is yielded before the window containing it has been judged. Windows are
  judged while the upstream keeps producing (the next window fills while the previous one is checked), so the
  added time is roughly one guard call per window, not per chunk.
* Pass-through (``pass_through=True``): chunks are yielded at once and windows are judged beside the stream;
  an unsafe window stops the stream late. Lower latency, and unsafe text can reach the reader. Opt-in only.

Each window is judged as an assistant response to the user's prompt, with ``overlap_chars`` of the previous
window in front of it so a phrase cut by a window boundary is still seen whole.

On an unsafe window: ``block`` raises :class:`ContentBlockedError`; ``rewrite`` yields one
:class:`StreamRefusal` (the adapter turns it into its own chunk) and ends; ``log`` releases the text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
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
    """Yielded once, last, when a window was unsafe under a ``rewrite`` action."""

    text: str
    verdict: Verdict


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
        self._stopped = False
        self.prompt = prompt
        self.policy = guard.policy_for(policy)
        self.options = options or guard.stream_options
        self.stage = stage
        self.verdicts: list[Verdict] = []

    @property
    def blocked(self) -> Verdict | None:
        """The first verdict that did not let its window pass, if any."""
        return next((v for v in self.verdicts if not v.allowed), None)

    # --- the decision, shared ----------------------------------------------------------------------------------

    def _decide(self, verdict: Verdict) -> StreamRefusal | None:
        """None: release. A refusal: stop with it. Raises for ``block``."""
        self.verdicts.append(verdict)
        if self.decide is not None:
            return self.decide(verdict)
        outcome = verdict.outcome
        if outcome is Outcome.PASS:
            return None
        if outcome is Outcome.REFUSE:
            return StreamRefusal(self.policy.refusal, verdict)
        raise self.error_cls(verdict, self.stage)

    def _check_kwargs(self, window: Window[C]) -> dict[str, Any]:
        return {"prompt": self.prompt, "response": window.text, "policy": self.policy, "stage": self.stage}

    # --- sync ---------------------------------------------------------------------------------------------------

    def iter(self, chunks: Iterable[C], text_of: Callable[[C], str]) -> Iterator[C | StreamRefusal]:
        """Yield ``chunks`` window by window once judged; a refusal (rewrite) comes last; a block raises."""
        buf: HoldbackBuffer[C] = HoldbackBuffer(self.options)
        source = iter(chunks)
        try:
            for chunk in source:
                if self.options.pass_through:
                    yield chunk
                window = buf.push(chunk, text_of(chunk) or "")
                if window is not None:
                    yield from self._sync_judge(window)
                    if self._stopped:
                        return
            window = buf.flush()
            if window is not None:
                yield from self._sync_judge(window)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _sync_judge(self, window: Window[C]) -> Iterator[C | StreamRefusal]:
        if window.text.strip():
            refusal = self._decide(self.guard.check(**self._check_kwargs(window)))
            if refusal is not None:
                self._stopped = True
                yield refusal
                return
        if not self.options.pass_through:
            yield from window.chunks

    # --- async --------------------------------------------------------------------------------------------------

    async def aiter(
        self, chunks: AsyncIterable[C], text_of: Callable[[C], str]
    ) -> AsyncIterator[C | StreamRefusal]:
        """The async twin of :meth:`iter`: the next window fills while the previous one is judged."""
        buf: HoldbackBuffer[C] = HoldbackBuffer(self.options)
        source = aiter(chunks)
        queue: deque[tuple[asyncio.Task[Verdict] | None, Window[C]]] = deque()
        next_chunk: asyncio.Task[C] | None = None
        exhausted = False
        pass_through = self.options.pass_through

        def enqueue(window: Window[C]) -> None:
            task = (
                asyncio.ensure_future(self.guard.acheck(**self._check_kwargs(window)))
                if window.text.strip()
                else None
            )
            queue.append((task, window))

        try:
            while True:
                if next_chunk is None and not exhausted:
                    next_chunk = asyncio.ensure_future(anext(source))
                waiting: set[asyncio.Future[Any]] = set()
                if next_chunk is not None:
                    waiting.add(next_chunk)
                if queue and queue[0][0] is not None:
                    waiting.add(queue[0][0])
                if waiting:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                # release judged windows, in order
                while queue and (queue[0][0] is None or queue[0][0].done()):
                    task, window = queue.popleft()
                    if task is not None:
                        refusal = self._decide(task.result())
                        if refusal is not None:
                            yield refusal
                            return
                    if not pass_through:
                        for c in window.chunks:
                            yield c
                if next_chunk is not None and next_chunk.done():
                    try:
                        chunk = next_chunk.result()
                    except StopAsyncIteration:
                        exhausted = True
                        last = buf.flush()
                        if last is not None:
                            enqueue(last)
                    else:
                        if pass_through:
                            yield chunk
                        full = buf.push(chunk, text_of(chunk) or "")
                        if full is not None:
                            enqueue(full)
                    next_chunk = None
                if exhausted and not queue:
                    return
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


__all__ = ["StreamGuard", "StreamOptions", "StreamRefusal"]
