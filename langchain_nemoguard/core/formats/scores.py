"""Verdict scores: the probability that a rating is ``unsafe``, read from the answer's token log-probabilities.

An endpoint that honours ``logprobs`` / ``top_logprobs`` (vLLM does; :class:`~..options.CallOptions` asks for
them when the provider supports it) returns, for every generated token, its log-probability and the most likely
alternatives at that position. The verdict of a field is decided at one position: the first token of the word
after ``User Safety:`` (or ``Response Safety:``; ``"User Safety": "`` in a JSON answer). The score of the field
is the probability mass of the ``unsafe`` alternatives there, renormalised over the ``safe`` and ``unsafe``
alternatives only (other alternatives - punctuation, a newline - are no verdict and are left out)::

    P(unsafe) = sum(p for unsafe alternatives) / sum(p for safe or unsafe alternatives)

Tokenisers differ, so an alternative is classified by the text it adds at the verdict position, whatever else
the token holds: ``" unsafe"``, ``"unsafe"``, ``" Unsafe"`` and ``": unsafe"`` are unsafe; a word split into
pieces (``" un"`` + ``"safe"``) is decided at its first piece, and a piece that can only start one of the two
words (``" un"``, ``" s"``) counts for that word. The chosen token counts even when ``top_logprobs`` omits it.

The score is information beside the parsed verdict, never instead of it (the parser alone decides safe or
unsafe): a score whose chosen token disagrees with the parsed rating, or that cannot be read (no logprobs, a
label not found, a verdict position no alternative can be classified at), is None. One check's calls are
combined in :mod:`..combine` as the largest score over the calls that rated the field.

Each format's ``parse`` calls :func:`attach_scores` once, with its own :class:`FieldLabels`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .base import ParsedCall

Rating = Literal["safe", "unsafe"]

# characters that may sit between a field's label and its verdict word (and that a verdict token may start with)
_SKIP: Final = " \t\r\n\"':"
_MIN_LOGPROB: Final = -1e4  # vLLM reports -inf as -9999.0; anything at or below this is probability 0


@dataclass(frozen=True, slots=True)
class FieldLabels:
    """Where each rating's verdict word follows, in one format's answer (the last match counts: a THINK trace
    before the verdict may quote the labels)."""

    user: re.Pattern[str]
    response: re.Pattern[str]


NEMOTRON_LABELS: Final = FieldLabels(
    re.compile(r"User\s+Safety\s*:", re.IGNORECASE), re.compile(r"Response\s+Safety\s*:", re.IGNORECASE)
)
JSON_LABELS: Final = FieldLabels(
    re.compile(r'"User Safety"\s*:\s*"'), re.compile(r'"Response Safety"\s*:\s*"')
)


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token: its text, log-probability and the alternatives at its position."""

    text: str
    logprob: float
    alternatives: tuple[tuple[str, float], ...] = ()


def attach_scores(call: ParsedCall, completion: Mapping[str, Any], labels: FieldLabels) -> ParsedCall:
    """``call`` with ``user_score`` / ``response_score`` read from ``completion``'s logprobs (unchanged when
    there are none, or none can be read)."""
    tokens = completion_logprobs(completion)
    if not tokens:
        return call
    user = _checked(field_score(tokens, labels.user), call.user_safe)
    response = _checked(field_score(tokens, labels.response), call.response_safe)
    if user is None and response is None:
        return call
    return dataclasses.replace(call, user_score=user, response_score=response)


def completion_logprobs(completion: Mapping[str, Any]) -> list[TokenLogprob] | None:
    """The tokens of ``choices[0].logprobs.content``, or None when absent or not in the OpenAI shape."""
    try:
        content = completion["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(content, list):
        return None
    out: list[TokenLogprob] = []
    for entry in content:
        token = _token(entry)
        if token is None:
            return None
        alternatives: list[tuple[str, float]] = []
        top = entry.get("top_logprobs")
        if top is None:
            top = []
        if not isinstance(top, list):
            return None
        for alt in top:
            parsed = _token(alt)
            if parsed is None:
                return None
            alternatives.append((parsed.text, parsed.logprob))
        out.append(TokenLogprob(token.text, token.logprob, tuple(alternatives)))
    return out


def field_score(tokens: Sequence[TokenLogprob], label: re.Pattern[str]) -> tuple[Rating, float] | None:
    """(the chosen rating, P(unsafe)) at the verdict word after the last ``label``, or None."""
    text = "".join(t.text for t in tokens)
    matches = list(label.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    pos = match.end()
    while pos < len(text) and text[pos] in _SKIP:
        pos += 1
    if pos >= len(text):
        return None
    start = 0
    for token in tokens:
        end = start + len(token.text)
        if start <= pos < end:
            return _score_at(token, text[start:pos])
        start = end
    return None  # pragma: no cover - pos < len(text) always falls in a token


def _score_at(token: TokenLogprob, prefix: str) -> tuple[Rating, float] | None:
    chosen = classify(token.text, prefix)
    if chosen is None:
        return None
    mass: dict[Rating, float] = {"safe": 0.0, "unsafe": 0.0}
    seen: set[str] = set()
    for text, logprob in ((token.text, token.logprob), *token.alternatives):
        if text in seen:
            continue
        seen.add(text)
        rating = classify(text, prefix)
        if rating is not None and logprob > _MIN_LOGPROB:
            mass[rating] += math.exp(logprob)
    total = mass["safe"] + mass["unsafe"]
    if not total > 0:
        return None
    return chosen, mass["unsafe"] / total


def classify(token: str, prefix: str = "") -> Rating | None:
    """The rating a token's text starts at the verdict position, ``prefix`` being the part of the token before
    that position (only skippable characters, or text every alternative must share)."""
    if prefix.strip(_SKIP):
        if not token.startswith(prefix):
            return None
        token = token[len(prefix) :]
    word = token.lstrip(_SKIP).lower()
    if not word:
        return None
    for rating in ("unsafe", "safe"):
        whole = word.startswith(rating) and (len(word) == len(rating) or not word[len(rating)].isalpha())
        if whole or rating.startswith(word):
            return rating
    return None


def _checked(found: tuple[Rating, float] | None, parsed_safe: bool | None) -> float | None:
    """The score, when the token the model chose says what the parser read (else the score belongs to some
    other reading, and is dropped)."""
    if found is None or parsed_safe is None:
        return None
    chosen, score = found
    return score if (chosen == "safe") == parsed_safe else None


def _token(entry: Any) -> TokenLogprob | None:
    if not isinstance(entry, Mapping):
        return None
    text, logprob = entry.get("token"), entry.get("logprob")
    if not isinstance(text, str) or isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
        return None
    if math.isnan(logprob):
        return None
    return TokenLogprob(text, float(logprob))


__all__ = [
    "JSON_LABELS",
    "NEMOTRON_LABELS",
    "FieldLabels",
    "TokenLogprob",
    "attach_scores",
    "classify",
    "completion_logprobs",
    "field_score",
]
