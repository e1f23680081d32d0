"""Windowing, all of it pure: long input in overlapping windows, and the hold-back buffer of a stream.

Long input: overlapping windows instead of truncation.

The served context is finite (the recipes serve 4096 tokens). Text longer than the budget is split into
overlapping windows that are judged concurrently; any unsafe window makes the whole text unsafe. Windows cut at
whitespace when one is near, so words are not split, and the overlap means a phrase that straddles a cut is
still seen whole by one window.

Streams: :class:`HoldbackBuffer` collects an adapter's chunks into windows of text to judge (the sync and async
loops of :mod:`.streaming` share it); :class:`StreamOptions` sizes them.

Token counts are estimated without the model's tokenizer (which the client does not have): one token per CJK,
kana, hangul or Thai character, one per four characters of anything else. The estimate errs high for
alphabetic scripts, which only makes windows smaller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar

C = TypeVar("C")

_DENSE = re.compile(
    "[\u0e00-\u0e7f\u1100-\u11ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)


def estimate_tokens(text: str) -> int:
    dense = len(_DENSE.findall(text))
    return dense + (len(text) - dense + 3) // 4


@dataclass(frozen=True, slots=True)
class WindowOptions:
    """How a conversation is cut into model calls (``NemoGuard(windows=...)``).

    Args:
        max_tokens: The budget for the judged text of one call. 2048 leaves room in a 4096-token context for
            the template's instructions and taxonomy (~700 tokens) and a THINK-mode answer (up to 1024).
        overlap_tokens: How much of the previous window each window repeats, so a phrase cut by a window
            boundary is seen whole by one of them.
        context_turns: How many earlier turns each call sends as context (0: only the judged turn).
    """

    max_tokens: int = 2048
    overlap_tokens: int = 128
    context_turns: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError("overlap_tokens must be >= 0 and less than half of max_tokens")
        if self.context_turns < 0:
            raise ValueError("context_turns must be >= 0")


def split_windows(text: str, options: WindowOptions) -> list[str]:
    """Split ``text`` into overlapping windows of at most ``options.max_tokens`` estimated tokens."""
    if len(text) <= options.max_tokens or estimate_tokens(text) <= options.max_tokens:
        return [text]
    windows: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        end = _advance(text, start, options.max_tokens)
        if end < n:
            # prefer to cut at whitespace in the last fifth of the window
            floor = start + (end - start) * 4 // 5
            ws = max(text.rfind(" ", floor, end), text.rfind("\n", floor, end))
            if ws > start:
                end = ws
        windows.append(text[start:end])
        if end >= n:
            break
        back = _retreat(text, end, options.overlap_tokens)
        start = max(back, start + 1)
    return windows


def _advance(text: str, start: int, budget: int) -> int:
    """The largest end such that text[start:end] fits the budget (linear, cheap enough for prompts)."""
    tokens = 0.0
    i = start
    n = len(text)
    while i < n:
        cost = 1.0 if _DENSE.match(text, i) else 0.25
        if tokens + cost > budget:
            break
        tokens += cost
        i += 1
    return i


def _retreat(text: str, end: int, budget: int) -> int:
    tokens = 0.0
    i = end
    while i > 0:
        cost = 1.0 if _DENSE.match(text, i - 1) else 0.25
        if tokens + cost > budget:
            break
        tokens += cost
        i -= 1
    return i


# --- stream hold-back ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How streamed output is held back and judged (``NemoGuard(stream=...)``, ``guard.wrap(stream=...)``).

    Args:
        window_chars: Text judged per call (bigger: fewer calls, later first token).
        overlap_chars: Characters of the previous window judged again in front of the next one.
        first_window_chars: A smaller first window, so the first text reaches the reader sooner (None: the
            first window is ``window_chars`` too).
        pass_through: Yield chunks at once and judge beside the stream (unsafe text can reach the reader
            before the stream is stopped; opt-in only).
    """

    window_chars: int = 800
    overlap_chars: int = 160
    first_window_chars: int | None = 200
    pass_through: bool = False

    def __post_init__(self) -> None:
        if self.window_chars < 1 or not 0 <= self.overlap_chars < self.window_chars:
            raise ValueError("need window_chars >= 1 and 0 <= overlap_chars < window_chars")
        if self.first_window_chars is not None and self.first_window_chars < 1:
            raise ValueError("first_window_chars must be >= 1")


@dataclass(slots=True)
class Window(Generic[C]):
    """A stretch of a stream: the chunks it released, and the text judged for them (overlap + new text)."""

    chunks: list[C]
    text: str


@dataclass(slots=True)
class HoldbackBuffer(Generic[C]):
    """Pure window bookkeeping, shared by the sync and async stream loops."""

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

    def push(self, chunk: C, text: str) -> Window[C] | None:
        """Buffer a chunk; return a full window to judge, or None."""
        self._chunks.append(chunk)
        if text:
            self._pending.append(text)
            self._pending_len += len(text)
            self.text_seen.append(text)
        if self._pending_len >= self._limit():
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
        window = Window(self._chunks, self._context + new)
        tail = window.text[-self.options.overlap_chars :] if self.options.overlap_chars else ""
        self._context = tail
        self._chunks, self._pending, self._pending_len = [], [], 0
        self._windows += 1
        return window
