"""Long input: overlapping windows instead of truncation.

The served context is finite (the recipes serve 4096 tokens). Text longer than the budget is split into
overlapping windows that are judged concurrently; any unsafe window makes the whole text unsafe. Windows cut at
whitespace when one is near, so words are not split, and the overlap means a phrase that straddles a cut is
still seen whole by one window.

Token counts are estimated without the model's tokenizer (which the client does not have): one token per CJK,
kana, hangul or Thai character, one per four characters of anything else. The estimate errs high for
alphabetic scripts, which only makes windows smaller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DENSE = re.compile(
    "[\u0e00-\u0e7f\u1100-\u11ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)


def estimate_tokens(text: str) -> int:
    dense = len(_DENSE.findall(text))
    return dense + (len(text) - dense + 3) // 4


@dataclass(frozen=True, slots=True)
class WindowOptions:
    """``max_tokens``: the budget for the judged text of one call. 2048 leaves room in a 4096-token context
    for the template's instructions and taxonomy (~700 tokens) and a THINK-mode answer (up to 1024)."""

    max_tokens: int = 2048
    overlap_tokens: int = 128

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError("overlap_tokens must be >= 0 and less than half of max_tokens")


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
