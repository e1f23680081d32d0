"""Reading a guard model's answer asymmetrically: strict before *safe*, never losing an explicit *unsafe*.

Every format (Nemotron 3.5's verdict lines, NemoGuard 8B's JSON) reads its answer with these rules; a format
adds only what a *clean* answer looks like (R5) and, for JSON, which values count as unsafe.

Why asymmetric: an answer the parser cannot read is an error, and under ``on_error="allow"`` an error passes.
So anything that turns an explicit unsafe answer into an error fails open. NeMo Guardrails returns unsafe for
an answer that says ``User Safety: unsafe`` with a stray byte around it; so must we. Before *safe* we stay at
least as strict as NeMo Guardrails' ``nemotron_content_safety_parse_*`` and ``nemoguard_parse_*``.

R1 Size. At most ``limit`` characters (``max_completion_chars``, default 65,536) of ``content`` and of
   ``reasoning_content`` are read. A longer answer counts as cut, exactly like ``finish_reason: "length"``: an
   unsafe reading within the limit stands, anything else is a TRUNCATED error.

R2 Traces. A *closed trace* is ``<think>...</think>`` in lowercase, opened at the first ``<think>`` and closed at
   the first ``</think>`` after it (NeMo Guardrails strips exactly these). A closed trace is reasoning: readings
   in it are ignored. Tags are matched case-insensitively everywhere else: a tag in another spelling, a
   ``<think>`` never closed, a ``</think>`` with no opener (orphan or repeated closers), or a tag inside a trace
   is a *marker*. Text around markers is outside any closed trace, so its readings count (NeMo Guardrails would
   read them too), and an answer with a marker is never safe: an open trace is TRUNCATED, any other marker
   UNPARSABLE.

R3 Readings. A reading is a field name, ``User Safety`` or ``Response Safety`` (any case; spaces, ``_``, ``-``
   or ``*`` between the words), then any run of whitespace (line breaks included), quotes, brackets, markdown
   emphasis and separators (``:`` ``=`` ``-`` ``|``), then the word ``safe`` or ``unsafe`` (any case) ending at a
   word boundary. Whatever follows on the line is ignored. Readings are taken everywhere outside closed traces:
   at a line start after bullets or emphasis, after a prose first line, mid-line, across any Unicode line break,
   in ``content`` and in ``reasoning_content`` alike.

R4 Unsafe wins. One unsafe reading makes its field unsafe, whatever else the answer holds: conflicting
   duplicates, a field the call did not ask for (``Response Safety: unsafe`` on a prompt-only call, which
   happens when earlier turns are shown), a reading before a length cut or the size limit, an unsafe reading in
   ``reasoning_content`` while ``content`` says safe. Categories are merged from every categories line (R6). An
   answer that was cut keeps its (possibly cut) list and is marked ``truncated``.

R5 Safe must be clean. With no unsafe reading anywhere, the answer is safe only when all of these hold:
   it was not cut (R1); it has no marker (R2); outside closed traces it has the format's clean shape (one
   ``Field: value`` line per field, nothing else, for Nemotron; one JSON object with exact keys for 8B); no field
   appears twice; every field the call needs reads exactly ``safe``; a field the call did not ask for is absent,
   except ``Response Safety: safe`` when earlier turns were shown. Anything else is an error: TRUNCATED when the
   answer was cut or a trace left open, UNPARSABLE otherwise. So *safe* requires strictly more than NeMo
   Guardrails requires, and *unsafe* is read wherever NeMo Guardrails would read it.

R6 Categories. ``Safety Categories`` (same spelling freedom as R3), a separator, then the rest of the line, split
   on commas; each entry is stripped of whitespace, quotes, emphasis and brackets; placeholders (``none``,
   ``n/a``) and empty entries are dropped; at most 64 are kept. Only an unsafe answer reports categories.

R7 Clean unsafe. An unsafe answer that also has R5's shape (apart from its unsafe values) and was not cut is
   *clean*. Only a clean unsafe answer may be turned safe by a policy's ``ignore_categories``: a messy or cut
   answer may be unsafe for a reason it never got to name.

R8 Linear. Every scan is one pass: ``str.find`` for traces, regular expressions whose runs are possessive
   (no backtracking into them) and never nested, ``str.splitlines`` for lines. A 1 MB hostile answer costs a
   few milliseconds, and only ``limit`` characters of it are read at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import VerdictParseError
from ..taxonomy import Taxonomy
from .base import ParsedCall

DEFAULT_MAX_COMPLETION_CHARS: Final = 64 * 1024
MAX_CATEGORIES: Final = 64

OPEN: Final = "<think>"
CLOSE: Final = "</think>"

USER: Final = "user"
RESPONSE: Final = "response"
FIELD_NAMES: Final = {USER: "User Safety", RESPONSE: "Response Safety"}

# R3. Runs are possessive (*+): the engine never backtracks into them, so a line of a million spaces or colons
# costs one pass. The separator run holds no letters, so the value that follows can never be swallowed by it.
_SEP_CHARS = r"""\s"'`*_()\[\]{}<>|:=\-\u2013\u2014"""
_READING: Final = re.compile(
    r"(?P<field>user|response)[\s_*\-]*+safety[" + _SEP_CHARS + r"]*+(?P<value>unsafe|safe)\b",
    re.IGNORECASE,
)
# The same readings on ASCII text lowered once: case-sensitive patterns that start with a literal, which the
# regex engine skips to at C speed (five times faster than the case-insensitive scan, and this text is the
# common case). Lowering ASCII keeps every index, so categories are cut from the original by position.
_ASCII_READINGS: Final = tuple(
    (name, re.compile(name + r"[\s_*\-]*+safety[" + _SEP_CHARS + r"]*+(?P<value>unsafe|safe)\b"))
    for name in (USER, RESPONSE)
)
# R6. The rest of the line: anything up to the next line break str.splitlines() would honour.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_CATEGORIES_BODY = (
    r"safety[\s_*\-]*+categor(?:ies|y)(?P<sep>[" + _SEP_CHARS + r"]*+)(?P<rest>[^" + _LINE_BREAKS + r"]*+)"
)
_CATEGORIES: Final = re.compile(_CATEGORIES_BODY, re.IGNORECASE)
_ASCII_CATEGORIES: Final = re.compile(_CATEGORIES_BODY)
_ANY_TAG: Final = re.compile(r"<(/?)think>", re.IGNORECASE)
_ENTRY_STRIP: Final = " \t\"'`*_[]{}"
_PLACEHOLDERS: Final = frozenset({"none", "n/a", "na", "null", "nil", "-", "nothing"})


@dataclass(frozen=True, slots=True)
class Expect:
    """What one call asked the model to rate."""

    user: bool = (
        True  # the call needs a User Safety verdict (False: its user text is context judged elsewhere)
    )
    response: bool = False  # an assistant turn was sent
    history: bool = False  # earlier turns were shown (the template then invites a Response Safety line)


@dataclass(slots=True)
class Answer:
    """One completion, scanned once (R1-R4, R6)."""

    raw: str
    outside: str  # content with closed traces removed (NeMo's strip), cut to the limit
    traces: list[str]
    reasoning_field: str | None
    cut: bool  # finish_reason "length" or over the size limit
    over_limit: bool
    open_trace: bool  # a <think> (any spelling) that never closed
    marker: str | None  # R2: why this answer has a marker, or None
    unsafe: set[str] = field(default_factory=set)  # fields with an unsafe reading
    categories: list[str] = field(default_factory=list)  # raw entries, in order, from every categories line

    @property
    def reasoning(self) -> str | None:
        parts = [t.strip() for t in self.traces]
        if self.reasoning_field and self.reasoning_field.strip():
            parts.append(self.reasoning_field.strip())
        return "\n\n".join(p for p in parts if p) or None

    @property
    def has_trace(self) -> bool:
        return bool(self.traces) or bool(self.reasoning_field and self.reasoning_field.strip())


@dataclass(frozen=True, slots=True)
class Clean:
    """A clean answer's fields (R5 shape): ``{"user": "safe"|"unsafe", "response": ...}`` and categories."""

    fields: Mapping[str, str]
    categories: tuple[str, ...] = ()


def completion_message(completion: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """``(content, reasoning_content, finish_reason)`` of ``choices[0]``; refuses what is not a chat completion."""
    try:
        choice = completion["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise VerdictParseError("the response is not a chat completion (no choices[0].message)") from None
    if not isinstance(message, Mapping) or not isinstance(choice, Mapping):
        raise VerdictParseError("the response is not a chat completion (no choices[0].message)")
    content = message.get("content")
    content = "" if content is None else content
    reasoning = message.get("reasoning_content")
    if reasoning is None:
        reasoning = message.get("reasoning")
    if not isinstance(content, str) or (reasoning is not None and not isinstance(reasoning, str)):
        raise VerdictParseError("message content is not text")
    finish = choice.get("finish_reason")
    return content, reasoning, finish if isinstance(finish, str) else None


def scan_answer(content: str, reasoning: str | None = None, *, cut: bool = False, limit: int) -> Answer:
    """R1-R4 and R6 over one completion: traces, markers, readings, categories. Linear in ``limit``."""
    raw = content
    over = len(content) > limit or (reasoning is not None and len(reasoning) > limit)
    content = content[:limit]
    if reasoning is not None:
        reasoning = reasoning[:limit]

    parts: list[str] = []
    traces: list[str] = []
    pos = 0
    while (
        "<" in content
    ):  # NeMo Guardrails' non-greedy strip, with str.find: linear even for a million openers
        start = content.find(OPEN, pos)
        if start < 0:
            break
        end = content.find(CLOSE, start + len(OPEN))
        if end < 0:
            break
        parts.append(content[pos:start])
        traces.append(content[start + len(OPEN) : end])
        pos = end + len(CLOSE)
    parts.append(content[pos:])
    outside = "".join(parts)

    # what is left of the tags (any spelling): pairs in another spelling, open traces, orphan closers
    low = outside.lower() if outside.isascii() else None
    open_trace, orphans, pairs = _leftover_tags(outside, low) if "<" in outside else (False, 0, 0)
    marker: str | None = None
    if open_trace:
        marker = "unterminated <think> block"
    elif orphans > 1:
        marker = "more than one </think> marker"
    elif orphans:
        marker = "a </think> marker without an opening <think>"
    elif pairs:
        marker = "a reasoning trace tagged other than <think>...</think>"
    elif any("think>" in t.lower() and _ANY_TAG.search(t) for t in traces):
        marker = "a trace marker inside a <think> trace"

    answer = Answer(
        raw=raw,
        outside=outside,
        traces=traces,
        reasoning_field=reasoning,
        cut=cut or over,
        over_limit=over,
        open_trace=open_trace,
        marker=marker,
    )
    _read(answer, outside, low)
    if reasoning:
        _read(answer, reasoning, reasoning.lower() if reasoning.isascii() else None)
    return answer


def _leftover_tags(text: str, low: str | None) -> tuple[bool, int, int]:
    """``(open trace, orphan closers, other markers)`` among the tags left after the closed traces."""
    if low is not None:  # ASCII: counts and the last tag's kind say it all, without a match object per tag
        openers, closers = low.count(OPEN), low.count(CLOSE)
        if not openers:
            return False, closers, 0
        return low.rfind(OPEN) > low.rfind(CLOSE), 0, openers + closers
    open_trace = False
    orphans = pairs = 0
    for m in _ANY_TAG.finditer(text):
        if not m.group(1):
            pairs += open_trace  # an opener inside an open trace: one more marker
            open_trace = True
        elif open_trace:
            open_trace = False
            pairs += 1
        else:
            orphans += 1
    return open_trace, orphans, pairs


def _read(answer: Answer, text: str, low: str | None) -> None:
    """R3, R4, R6 over one text: unsafe readings and categories lines. ``low``: the text lowered, if ASCII."""
    if low is not None:
        if "safety" not in low:  # every reading and every categories line names it
            return
        for name, pattern in _ASCII_READINGS:
            if name not in answer.unsafe and any(m.group("value") == "unsafe" for m in pattern.finditer(low)):
                answer.unsafe.add(name)
        matches = _ASCII_CATEGORIES.finditer(low)
    else:
        for m in _READING.finditer(text):
            if m.group("value").lower() == "unsafe":
                answer.unsafe.add(USER if m.group("field").lower() == USER else RESPONSE)
        matches = _CATEGORIES.finditer(text)
    for m in matches:
        if len(answer.categories) >= MAX_CATEGORIES:
            break
        rest, quote = text[m.start("rest") : m.end("rest")], m.group("sep").rstrip()[-1:]
        if quote in ('"', "'"):  # a quoted value (JSON): it ends at its closing quote
            rest = rest.split(quote, 1)[0]
        answer.categories += split_categories(rest)


def split_categories(text: str) -> list[str]:
    """R6 for one categories value: comma-separated entries, decoration and placeholders dropped."""
    out: list[str] = []
    for entry in text.split(",", MAX_CATEGORIES)[:MAX_CATEGORIES]:  # bounded: never a million entries
        name = entry.strip(_ENTRY_STRIP).rstrip(".;:").strip(_ENTRY_STRIP)
        if name.endswith(")") and "(" not in name:
            name = name[:-1].strip(_ENTRY_STRIP)
        if name.startswith("(") and ")" not in name:
            name = name[1:].strip(_ENTRY_STRIP)
        if name and name.casefold() not in _PLACEHOLDERS:
            out.append(name)
    return out


def decide(
    answer: Answer,
    clean: Clean | str,
    expect: Expect,
    taxonomy: Taxonomy,
    *,
    extra_unsafe: Iterable[str] = (),
    categories: list[str] | None = None,
    think: bool = False,
) -> ParsedCall:
    """R4, R5, R7: turn a scanned answer and the format's clean reading (or why it is not clean) into a call
    result, or raise :class:`VerdictParseError`. ``extra_unsafe``: fields a format reads as unsafe on its own
    terms (8B: any JSON value but ``safe``). ``categories``: the format's own list, if it has a better one."""
    unsafe = set(answer.unsafe) | set(extra_unsafe)
    fields: Mapping[str, str] = clean.fields if isinstance(clean, Clean) else {}
    # a clean value of "unsafe" is always a reading too; kept here so the two can never disagree
    unsafe |= {f for f, v in fields.items() if v == "unsafe"}
    if isinstance(clean, Clean):
        clean = _check_fields(clean, expect)
    trace_missing = think and not answer.has_trace and not answer.open_trace

    if unsafe:
        tidy = isinstance(clean, Clean) and not answer.cut and answer.marker is None

        def rating(name: str) -> bool | None:
            if name in unsafe:
                return False
            return True if fields.get(name) == "safe" else None

        entries = categories if categories is not None else answer.categories
        cats = tuple(taxonomy.normalise_all(entries)[:MAX_CATEGORIES])
        return ParsedCall(
            user_safe=rating(USER),
            response_safe=rating(RESPONSE),
            categories=cats,
            reasoning=answer.reasoning,
            raw=answer.raw,
            truncated=answer.cut or answer.open_trace,
            clean=tidy,
            trace_missing=trace_missing,
        )

    if answer.over_limit:
        raise VerdictParseError(
            "the answer is over the max_completion_chars limit and holds no unsafe verdict within it",
            answer.raw,
            truncated=True,
        )
    if answer.cut:
        raise VerdictParseError(
            "finish_reason is 'length': the answer was cut off", answer.raw, truncated=True
        )
    if answer.marker is not None:
        raise VerdictParseError(answer.marker, answer.raw, truncated=answer.open_trace)
    if isinstance(clean, str):
        raise VerdictParseError(clean, answer.raw)
    return ParsedCall(
        user_safe=True if USER in clean.fields else None,
        response_safe=True if RESPONSE in clean.fields else None,
        categories=(),
        reasoning=answer.reasoning,
        raw=answer.raw,
        truncated=False,
        clean=True,
        trace_missing=trace_missing,
    )


def _check_fields(clean: Clean, expect: Expect) -> Clean | str:
    """R5's field rules: needed fields present, unasked ones absent (bar a safe Response Safety with history)."""
    if expect.user and USER not in clean.fields:
        return "missing User Safety"
    if expect.response and RESPONSE not in clean.fields:
        return "a response was sent but Response Safety is missing"
    unasked = not expect.response and RESPONSE in clean.fields
    if unasked and not (expect.history and clean.fields[RESPONSE] == "safe"):
        return "Response Safety present although no response was sent"
    return clean


__all__ = [
    "DEFAULT_MAX_COMPLETION_CHARS",
    "Answer",
    "Clean",
    "Expect",
    "completion_message",
    "decide",
    "scan_answer",
    "split_categories",
]
