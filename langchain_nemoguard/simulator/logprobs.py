"""Deterministic token log-probabilities, for requests that ask for ``logprobs`` (``top_logprobs``).

The simulator is no language model, so its logprobs are a convention, documented here so tests can compute
what a client should read from them:

* the output is cut into word-like tokens: a run of whitespace joins the word after it (``" unsafe"``,
  ``"\\nResponse"``); every token is certain (logprob 0) with itself as its only alternative, except
* the verdict word after ``User Safety:`` and ``Response Safety:``. There the probability that the rating is
  ``unsafe`` is ``p`` - :func:`verdict_probability` of the judged text, or the ``user_score`` /
  ``response_score`` of a forced outcome - and the alternatives are the chosen word, the other verdict word
  and one filler token, with probabilities ``(1 - FILLER)`` times ``p`` or ``1 - p``, and ``FILLER``. A client
  that renormalises over the safe and unsafe alternatives (``Verdict.score``) reads ``p`` back exactly (to
  float precision), whatever ``top_logprobs`` (>= 2) cuts off.
* with ``SimulatorConfig(split_verdict_tokens=True)`` a verdict word is two tokens (``" un"`` + ``"safe"``,
  ``" s"`` + ``"afe"``), the way byte-pair tokenisers often split it; the alternatives sit at the first piece.

Streamed answers carry no logprobs.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any, Final

FILLER: Final = 0.04
FILLER_TOKEN: Final = "\n"
_TOKENS: Final = re.compile(r"\s*\S+|\s+")
_LABEL: Final = re.compile(r"(User|Response) Safety:\Z")


def verdict_probability(text: str | None, unsafe: bool) -> float:
    """The simulator's P(unsafe) for a rating of ``text``: in [0.90, 0.99) when it judged it unsafe, else in
    [0.01, 0.10), fixed by the text's SHA-256 (the same text always gets the same number)."""
    digest = hashlib.sha256((text or "").encode("utf-8", "surrogatepass")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return (0.90 if unsafe else 0.01) + 0.09 * u


def token_logprobs(
    text: str, unsafe_probability: Mapping[str, float], *, top: int, split_verdicts: bool = False
) -> list[dict[str, Any]]:
    """``choices[0].logprobs.content`` for ``text``; ``unsafe_probability`` maps ``"user"`` / ``"response"``
    to P(unsafe) at that field's verdict word (a field not in it gets certainty, i.e. 0 or 1)."""
    out: list[dict[str, Any]] = []
    pending: str | None = None  # the field whose verdict word comes next
    seen = ""
    for token in _TOKENS.findall(text):
        if pending is not None and token.strip().lower() in ("safe", "unsafe"):
            out += _verdict(token, unsafe_probability.get(pending), top, split_verdicts)
            pending = None
        else:
            out.append(_entry(token, 0.0, [(token, 0.0)][:top]))
        seen += token
        label = _LABEL.search(seen[-20:])
        if label is not None:
            pending = label.group(1).lower()
    return out


def _verdict(token: str, p_unsafe: float | None, top: int, split: bool) -> list[dict[str, Any]]:
    word = token.strip().lower()
    lead = token[: len(token) - len(token.lstrip())]
    unsafe = word == "unsafe"
    if p_unsafe is None:
        p_unsafe = 1.0 if unsafe else 0.0
    p_chosen = p_unsafe if unsafe else 1.0 - p_unsafe
    other = "safe" if unsafe else "unsafe"
    if split:
        first, rest = (lead + "un", "safe") if unsafe else (lead + "s", "afe")
        other_first = lead + ("s" if unsafe else "un")
    else:
        first, rest, other_first = token, None, lead + other
    alternatives = [
        (first, _log((1 - FILLER) * p_chosen)),
        (other_first, _log((1 - FILLER) * (1 - p_chosen))),
        (FILLER_TOKEN, _log(FILLER)),
    ]
    alternatives.sort(key=lambda a: -a[1])
    entries = [_entry(first, _log((1 - FILLER) * p_chosen), alternatives[:top])]
    if rest is not None:
        entries.append(_entry(rest, 0.0, [(rest, 0.0)][:top]))
    return entries


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -9999.0  # vLLM's stand-in for -inf


def _entry(token: str, logprob: float, alternatives: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode("utf-8", "surrogatepass")),
        "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8", "surrogatepass"))}
            for t, lp in alternatives
        ],
    }


__all__ = ["FILLER", "token_logprobs", "verdict_probability"]
