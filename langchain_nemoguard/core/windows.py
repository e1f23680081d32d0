"""Windowing, all of it pure: long input in overlapping windows, and the hold-back buffer of a stream.

Long input: overlapping windows instead of truncation, each call held to the served context.

The served context is finite (the recipes serve 4096 tokens). Text longer than a call can hold is split into
overlapping windows that are judged concurrently; any unsafe window makes the whole text unsafe. Windows cut at
whitespace when one is near, so words are not split, and the overlap means a phrase that straddles a cut is
still seen whole by one window.

Streams: :class:`HoldbackBuffer` collects an adapter's chunks into windows of text to judge (the sync and async
loops of :mod:`.streaming` share it); :class:`StreamOptions` sizes them.

Token counts are estimated without the model's tokenizer (which the client does not have), from the UTF-8
form of the text, erring high: a quarter token per ASCII letter or whitespace character, one token per other
ASCII character (digits and punctuation are often a token each), half a token per two-byte character (accented
Latin, Greek, Cyrillic, Hebrew, Arabic), one per three-byte character (CJK, kana, hangul, Thai, Indic scripts,
symbols) and two per four-byte character (emoji, rare ideographs).

Everything here is linear in the text and runs in C-speed passes (``bytes.translate``/``count`` over chunks of
at most 1024 characters, a binary search inside the last chunk of a window), so a 1 MB prompt is planned in
milliseconds. :func:`aplan_segments` hands the event loop back between windows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Generic, TypeVar

from .errors import ConfigurationError

C = TypeVar("C")

DEFAULT_MAX_CONTEXT_TOKENS: Final = 4096  # `nemoguard serve` passes --max-model-len 4096 (ServeOptions)
DEFAULT_MAX_INPUT_CHARS: Final = 400_000  # ~100k tokens of English: about 50 windows at the default budget

# Classes of UTF-8 bytes: letters and whitespace, other ASCII, continuation bytes, and the lead bytes of 2-, 3-
# and 4-byte characters. A character's class is that of its first byte; its cost in quarter tokens below.
_CLASS_TABLE: Final = bytes(
    (
        ord("a")
        if (65 <= b <= 90 or 97 <= b <= 122 or b in (9, 10, 13, 32))
        else ord("o")
        if b < 0x80
        else ord("c")
        if b < 0xC0
        else ord("2")
        if b < 0xE0
        else ord("3")
        if b < 0xF0
        else ord("4")
    )
    for b in range(256)
)
_NOT_LETTERS: Final = bytes(b for b in range(256) if _CLASS_TABLE[b] != ord("a"))
_CHUNK: Final = 1024


def _quarters(text: str, start: int = 0, end: int | None = None) -> int:
    """The estimated cost of ``text[start:end]`` in quarter tokens (every character costs at least one)."""
    piece = text[start:end]
    chars = len(piece)
    if not chars:
        return 0
    raw = piece.encode("utf-8", "surrogatepass")
    size = len(raw)
    if size == chars:  # pure ASCII: letters and whitespace cost 1, the rest 4
        letters = len(raw.translate(None, _NOT_LETTERS))
        return 4 * chars - 3 * letters
    # cost = a + 4o + 2*n2 + 4*n3 + 8*n4 = 4*chars - 3a - 2*n2 + 4*n4, counting characters by their first byte
    classes = raw.translate(_CLASS_TABLE)
    if size == 3 * chars and classes.count(b"3") == chars:  # CJK text: one count instead of three
        return 4 * chars
    return 4 * chars - 3 * classes.count(b"a") - 2 * classes.count(b"2") + 4 * classes.count(b"4")


def estimate_tokens(text: str) -> int:
    """An upper-leaning token estimate for ``text`` (see the module docstring)."""
    return (_quarters(text) + 3) // 4


def fits(text: str, max_tokens: int) -> bool:
    """Whether ``text`` is at most ``max_tokens`` estimated tokens; reads no more than it must."""
    return _advance(text, 0, 4 * max_tokens) >= len(text)


@dataclass(frozen=True, slots=True)
class WindowOptions:
    """How a conversation is cut into model calls (``NemoGuard(windows=...)``).

    Args:
        max_tokens: The most estimated tokens of judged text in one window (a call is further held to what
            ``max_context_tokens`` leaves).
        overlap_tokens: How much of the previous window each window repeats, so a phrase cut by a window
            boundary is seen whole by one of them.
        context_turns: How many earlier turns each call sends as context (0: only the judged turn).
        max_context_tokens: The served context (``--max-model-len``; 4096, what ``nemoguard serve`` serves).
            Every call counts its template, policy text, earlier turns, image and answer against it, so that
            no call is refused by the server for length.
        max_input_chars: The most characters of text one check takes (prompt, response and the earlier turns
            sent as context); a larger input raises :class:`InputTooLargeError` before any call instead of
            sending hundreds of them.
    """

    max_tokens: int = 2048
    overlap_tokens: int = 128
    context_turns: int = 0
    max_context_tokens: int = DEFAULT_MAX_CONTEXT_TOKENS
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError("overlap_tokens must be >= 0 and less than half of max_tokens")
        if self.context_turns < 0:
            raise ValueError("context_turns must be >= 0")
        if self.max_context_tokens < 1 or self.max_input_chars < 1:
            raise ConfigurationError("max_context_tokens and max_input_chars must be >= 1")

    def capped(self, max_tokens: int) -> WindowOptions:
        """These options with windows no larger than ``max_tokens`` (the overlap shrunk to fit)."""
        if max_tokens >= self.max_tokens:
            return self
        limit = max(16, max_tokens)
        return dataclasses.replace(
            self, max_tokens=limit, overlap_tokens=min(self.overlap_tokens, max(0, limit // 2 - 1))
        )


def iter_windows(text: str, options: WindowOptions) -> Iterator[str]:
    """Overlapping windows of at most ``options.max_tokens`` estimated tokens, lazily, in linear time."""
    budget = 4 * options.max_tokens
    n = len(text)
    start = 0
    while True:
        end = _advance(text, start, budget)
        if end >= n:
            yield text[start:]
            return
        # prefer to cut at whitespace in the last fifth of the window
        floor = start + (end - start) * 4 // 5
        ws = max(text.rfind(" ", floor, end), text.rfind("\n", floor, end))
        if ws > start:
            end = ws
        yield text[start:end]
        back = _retreat(text, end, 4 * options.overlap_tokens)
        start = max(back, start + 1)


def split_windows(text: str, options: WindowOptions) -> list[str]:
    """Split ``text`` into overlapping windows of at most ``options.max_tokens`` estimated tokens."""
    return list(iter_windows(text, options))


def _advance(text: str, start: int, budget: int) -> int:
    """The largest ``end`` such that ``text[start:end]`` costs at most ``budget`` quarter tokens."""
    n = len(text)
    end, spent = start, 0
    while end < n and spent < budget:
        # every character costs at least one quarter: never read more than the budget left can hold
        stop = min(n, end + _CHUNK, end + budget - spent)
        cost = _quarters(text, end, stop)
        if spent + cost <= budget:
            spent += cost
            end = stop
            continue
        return end + _largest(partial(_span, text, end), 0, 0, stop - end, cost, budget - spent)
    return end


def _retreat(text: str, end: int, budget: int) -> int:
    """The smallest ``start`` such that ``text[start:end]`` costs at most ``budget`` quarter tokens."""
    hi = min(end, budget)  # every character costs at least one quarter
    cost_hi = _quarters(text, end - hi, end)
    if cost_hi <= budget:
        return end - hi
    return end - _largest(partial(_span_back, text, end), 0, 0, hi, cost_hi, budget)


def _span(text: str, start: int, k: int) -> int:
    return _quarters(text, start, start + k)


def _span_back(text: str, end: int, k: int) -> int:
    return _quarters(text, end - k, end)


def _largest(cost: Callable[[int], int], lo: int, cost_lo: int, hi: int, cost_hi: int, budget: int) -> int:
    """The largest ``k`` in ``[lo, hi)`` with ``cost(k) <= budget``, for a non-decreasing ``cost`` with
    ``cost(lo) <= budget < cost(hi)``. Interpolation search (text is mostly even, so one or two probes land),
    alternating with bisection so that uneven text still takes logarithmically many probes."""
    bisect = False
    while hi - lo > 1:
        if bisect:
            k = (lo + hi) // 2
        else:
            k = lo + (budget - cost_lo) * (hi - lo) // max(1, cost_hi - cost_lo)
            k = min(max(k, lo + 1), hi - 1)
        bisect = not bisect
        c = cost(k)
        if c <= budget:
            lo, cost_lo = k, c
        else:
            hi, cost_hi = k, c
    return lo


# --- planning the texts of one check -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """The texts of one call. ``judge_prompt`` is False when ``prompt`` is only context for a response window
    (the prompt itself is judged, whole, by other calls of the same check)."""

    prompt: str
    response: str | None = None
    judge_prompt: bool = True


def iter_segments(
    prompt: str, response: str | None, *, budget: int, options: WindowOptions
) -> Iterator[Segment]:
    """The calls that judge ``prompt`` (and ``response``) when one call holds ``budget`` tokens of text.

    * Both fit one call: one call.
    * A short prompt (a quarter of the budget at most) and a long response: every response window goes with the
      whole prompt; the first call judges the prompt, the others carry it as context.
    * Otherwise the prompt is judged alone in windows, and each response window goes with the prompt's tail
      (a quarter of the budget) as context.

    No call holds more than ``budget`` estimated tokens of text, nor a window over ``options.max_tokens``.
    """
    opts = options.capped(budget)
    # every character costs at most two tokens: short texts need no counting at all (the common case)
    short = 2 * (len(prompt) + len(response or "")) <= opts.max_tokens
    if short:
        yield Segment(prompt, response)
        return
    if response is None:
        for window in iter_windows(prompt, opts):
            yield Segment(window)
        return
    context_budget = max(1, budget // 4)
    p_quarters = _quarters(prompt, 0, _advance(prompt, 0, 4 * budget + 1))  # capped: reads at most the budget
    p_tokens = (p_quarters + 3) // 4
    if p_tokens <= opts.max_tokens and fits(response, opts.max_tokens) and fits(response, budget - p_tokens):
        yield Segment(prompt, response)
        return
    if p_tokens <= context_budget:
        response_opts = options.capped(budget - p_tokens)
        for i, window in enumerate(iter_windows(response, response_opts)):
            yield Segment(prompt, window, judge_prompt=i == 0)
        return
    for window in iter_windows(prompt, opts):
        yield Segment(window)
    context = tail(prompt, context_budget)
    response_opts = options.capped(budget - estimate_tokens(context))
    for window in iter_windows(response, response_opts):
        yield Segment(context, window, judge_prompt=False)


def plan_segments(prompt: str, response: str | None, *, budget: int, options: WindowOptions) -> list[Segment]:
    return list(iter_segments(prompt, response, budget=budget, options=options))


async def aplan_segments(
    prompt: str, response: str | None, *, budget: int, options: WindowOptions, slice_s: float = 0.001
) -> list[Segment]:
    """:func:`plan_segments` for the event loop: yields to it whenever ``slice_s`` of work has gone by."""
    out: list[Segment] = []
    mark = time.perf_counter()
    for segment in iter_segments(prompt, response, budget=budget, options=options):
        out.append(segment)
        if time.perf_counter() - mark > slice_s:
            await asyncio.sleep(0)
            mark = time.perf_counter()
    return out


def tail(text: str, max_tokens: int) -> str:
    """The end of ``text`` within ``max_tokens`` estimated tokens, starting at a word when one is near."""
    start = _retreat(text, len(text), 4 * max_tokens)
    if start > 0:
        ceiling = start + (len(text) - start) // 5
        ws = text.find(" ", start, ceiling)
        if ws >= 0:
            start = ws + 1
    return text[start:]


# --- stream hold-back ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How streamed output is held back and judged (``NemoGuard(stream=...)``, ``guard.wrap(stream=...)``).

    Windows start small and grow: the first holds ``first_window_chars`` of new text, each next one
    ``window_growth`` times the previous, up to ``window_chars``. A small first window puts the first text in
    front of the reader after one guard call plus a few dozen characters of generation; growing windows keep
    the number of guard calls (and the gaps between releases) in proportion to the text. While one window is
    released the next fills, and it is judged while the stream goes on (up to ``max_pending_windows`` at once).

    Args:
        window_chars: The largest window: new text judged per call once windows have grown (bigger: fewer
            calls, longer gaps between releases).
        overlap_chars: Characters of the previous window judged again in front of the next one, so a phrase
            cut by a window boundary is still seen whole.
        first_window_chars: The first window (None: ``window_chars``; capped at ``window_chars``).
        window_growth: How much each window grows over the previous one, at least 1.0 (1.0: every window
            is ``first_window_chars``; 2.0, the default: 40, 80, 160, ... up to ``window_chars``).
        max_pending_windows: The most windows being judged at once; with that many in flight the stream stops
            pulling chunks until the oldest is judged, so a slow guard holds back a bounded amount of text and
            makes a bounded number of calls.
        pass_through: Yield chunks at once and judge beside the stream (unsafe text can reach the reader
            before the stream is stopped; opt-in only).
    """

    window_chars: int = 800
    overlap_chars: int = 160
    first_window_chars: int | None = 40
    window_growth: float = 2.0
    max_pending_windows: int = 4
    pass_through: bool = False

    def __post_init__(self) -> None:
        if self.window_chars < 1 or not 0 <= self.overlap_chars < self.window_chars:
            raise ValueError("need window_chars >= 1 and 0 <= overlap_chars < window_chars")
        if self.first_window_chars is not None and self.first_window_chars < 1:
            raise ValueError("first_window_chars must be >= 1")
        growth = self.window_growth
        if isinstance(growth, bool) or not isinstance(growth, int | float) or not 1.0 <= growth <= 1000.0:
            raise ValueError("window_growth must be a number from 1.0 to 1000.0")
        if isinstance(self.max_pending_windows, bool) or not 1 <= self.max_pending_windows <= 64:
            raise ValueError("max_pending_windows must be from 1 to 64")

    @property
    def first_window(self) -> int:
        """The size of the first window, in characters of new text."""
        return min(self.first_window_chars or self.window_chars, self.window_chars)

    def next_window(self, size: int) -> int:
        """The size of the window after one of ``size`` characters (grows by at least one when growing)."""
        if self.window_growth == 1.0:
            return size
        return min(self.window_chars, max(size + 1, int(size * self.window_growth)))

    def window_sizes(self, count: int) -> list[int]:
        """The sizes of the first ``count`` windows (for docs and tests; the buffer grows them one by one)."""
        sizes, size = [], self.first_window
        for _ in range(count):
            sizes.append(size)
            size = self.next_window(size)
        return sizes


@dataclass(slots=True)
class Window(Generic[C]):
    """A stretch of a stream: the chunks it released, and the text judged for them (overlap + new text).

    ``context_chars`` is the length of the overlap in front (judged again, released before)."""

    chunks: list[C]
    text: str
    context_chars: int = 0

    @property
    def new_text(self) -> str:
        """The text this window releases (its chunks' text)."""
        return self.text[self.context_chars :]


@dataclass(slots=True)
class HoldbackBuffer(Generic[C]):
    """Pure window bookkeeping, shared by the sync and async stream loops: windows grow from
    ``options.first_window`` by ``options.window_growth`` up to ``options.window_chars``."""

    options: StreamOptions
    _chunks: list[C] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)
    _pending_len: int = 0
    _context: str = ""
    _limit: int = 0

    def __post_init__(self) -> None:
        self._limit = self.options.first_window

    def push(self, chunk: C, text: str) -> Window[C] | None:
        """Buffer a chunk; return a full window to judge, or None."""
        self._chunks.append(chunk)
        if text:
            self._pending.append(text)
            self._pending_len += len(text)
        if self._pending_len >= self._limit:
            return self._cut()
        return None

    def flush(self) -> Window[C] | None:
        """The rest at the end of the stream (chunks without text are released with it)."""
        if not self._chunks:
            return None
        if not self._pending_len:
            chunks, self._chunks = self._chunks, []
            return Window(chunks, "")
        return self._cut()

    def _cut(self) -> Window[C]:
        new = "".join(self._pending)
        window = Window(self._chunks, self._context + new, len(self._context))
        tail = window.text[-self.options.overlap_chars :] if self.options.overlap_chars else ""
        self._context = tail
        self._chunks, self._pending, self._pending_len = [], [], 0
        self._limit = self.options.next_window(self._limit)
        return window


__all__ = [
    "DEFAULT_MAX_CONTEXT_TOKENS",
    "DEFAULT_MAX_INPUT_CHARS",
    "HoldbackBuffer",
    "Segment",
    "StreamOptions",
    "Window",
    "WindowOptions",
    "aplan_segments",
    "estimate_tokens",
    "fits",
    "iter_segments",
    "iter_windows",
    "plan_segments",
    "split_windows",
    "tail",
]
