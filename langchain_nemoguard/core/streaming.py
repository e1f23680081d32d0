"""Streaming output: hold text back until the window that contains it has been judged.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ContentBlockedError, Stage
from .verdict import Action, Verdict

if TYPE_CHECKING:
    from .guard import NemoGuard
    from .policy import Policy

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """``window_chars``: text judged per call (bigger: fewer calls, later first token). ``first_window_chars``:
    a smaller first window, so the first text reaches the reader sooner."""

    window_chars: int = 800
    overlap_chars: int = 160
    first_window_chars: int | None = 200
    pass_through: bool = False

    def __post_init__(self) -> None:
        if self.window_chars < 1 or not 0 <= self.overlap_chars < self.window_chars:
            raise ValueError("need window_chars >= 1 and 0 <= overlap_chars < window_chars")
        if self.first_window_chars is not None and self.first_window_chars < 1:
            raise ValueError("first_window_chars must be >= 1")


@dataclass(frozen=True, slots=True)
class StreamRefusal:
    """Yielded once, last, when a window was unsafe under a ``rewrite`` action."""

    text: str
    verdict: Verdict


@dataclass(slots=True)
class _Window(Generic[C]):
    chunks: list[C]
    text: str  # overlap context + new text: what is judged


@dataclass(slots=True)
class HoldbackBuffer(Generic[C]):
    """Pure window bookkeeping, shared by the sync and async loops."""

    options: StreamOptions
    _chunks: list[C] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)
    _pending_len: int = 0
    _context: str = ""
    _windows: int = 0
    text_seen: list[str] = field(default_factory=list)

    def _limit(self) -> int:
        first = self.options.first_window_chars
        return first if (self._windows == 0 and first) else self.options.window_chars

    def push(self, chunk: C, text: str) -> _Window[C] | None:
        """Buffer a chunk; return a full window to judge, or None."""
        self._chunks.append(chunk)
        if text:
            self._pending.append(text)
            self._pending_len += len(text)
            self.text_seen.append(text)
        if self._pending_len >= self._limit():
            return self._cut()
        return None

    def flush(self) -> _Window[C] | None:
        """The rest at the end of the stream (chunks without text are released with it)."""
        if not self._chunks:
            return None
        if not self._pending_len:
            chunks, self._chunks = self._chunks, []
            return _Window(chunks, "")
        return self._cut()

    def _cut(self) -> _Window[C]:
        new = "".join(self._pending)
        window = _Window(self._chunks, self._context + new)
        tail = window.text[-self.options.overlap_chars :] if self.options.overlap_chars else ""
        self._context = tail
        self._chunks, self._pending, self._pending_len = [], [], 0
        self._windows += 1
        return window


class StreamGuard(Generic[C]):
    """Guards one stream of assistant output. Create one per stream."""

    def __init__(
        self,
        guard: NemoGuard,
        *,
        prompt: str = "",
        policy: Policy | str | None = None,
        options: StreamOptions | None = None,
        stage: Stage = Stage.OUTPUT,
        error_cls: type[ContentBlockedError] = ContentBlockedError,
    ) -> None:
        self.guard = guard
        self.error_cls = error_cls
        self._stopped = False
        self.prompt = prompt
        self.policy = guard._resolve_policy(policy)
        self.options = options or guard.stream_options()
        self.stage = stage
        self.verdicts: list[Verdict] = []

    @property
    def blocked(self) -> Verdict | None:
        return next((v for v in self.verdicts if not v.allowed), None)

    # --- the decision, shared ----------------------------------------------------------------------------------

    def _decide(self, verdict: Verdict) -> StreamRefusal | None:
        """None: release. A refusal: stop with it. Raises for ``block``."""
        verdict = for_stage(verdict, self.stage)
        self.verdicts.append(verdict)
        if verdict.allowed:
            return None
        if verdict.action is Action.REWRITE and verdict.error is None:
            return StreamRefusal(self.policy.refusal, verdict)
        raise self.error_cls(verdict, self.stage)

    def _check_kwargs(self, window: _Window[C]) -> dict[str, Any]:
        return {"prompt": self.prompt, "response": window.text, "policy": self.policy}

    # --- sync ---------------------------------------------------------------------------------------------------

    def iter(self, chunks: Iterable[C], text_of: Callable[[C], str]) -> Iterator[C | StreamRefusal]:
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

    def _sync_judge(self, window: _Window[C]) -> Iterator[C | StreamRefusal]:
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
        buf: HoldbackBuffer[C] = HoldbackBuffer(self.options)
        source = aiter(chunks)
        queue: deque[tuple[asyncio.Task[Verdict] | None, _Window[C]]] = deque()
        next_chunk: asyncio.Task[C] | None = None
        exhausted = False
        pass_through = self.options.pass_through

        def enqueue(window: _Window[C]) -> None:
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
                    waiting.add(queue[0][0])  # type: ignore[arg-type]
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
                        window = buf.push(chunk, text_of(chunk) or "")
                        if window is not None:
                            enqueue(window)
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


def for_stage(verdict: Verdict, stage: Stage | str) -> Verdict:
    """Narrow a verdict to the part a stage is about.

    An output check sends the prompt as context, so the model also rates the prompt; at the output stage only
    the response rating decides (the prompt had its own check at the input stage).
    """
    stage = Stage(stage)
    if verdict.error is not None or verdict.safe:
        return verdict
    if stage in (Stage.OUTPUT, Stage.TOOL_CALL) and verdict.response_safe is True:
        return verdict.replace(safe=True, action=Action.ALLOW)
    return verdict
