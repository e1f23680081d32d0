"""Nemotron 3.5 Content Safety: request builder and asymmetric verdict reader.

The model's chat template builds the classifier prompt on the server. The client sends only the turns to judge
(a user turn, optionally an assistant turn) and steers the template with ``chat_template_kwargs``. Rules that
come from the model's documented interface (see ``reference/nemotron-formats.md``):

* no system message (the template would silently drop it); roles alternate starting with ``user``;
* the image part goes before the text part, at most one image per call, never an image without text;
* the assistant turn is present only for response checks: its presence is what makes the model rate it;
* the verdict follows the trace directly (``</think>User Safety: ...``) and may come in ``reasoning_content``.

Reading the answer follows the rules R1-R8 in :mod:`.reading` (unsafe wins; safe must be clean). The clean
shape of this format: outside closed ``<think>`` traces, every non-blank line is exactly one of
``User Safety: safe|unsafe``, ``Response Safety: safe|unsafe`` or ``Safety Categories: <list>`` (field names in
any case), each at most once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ..taxonomy import BUILTIN_TAXONOMY, Taxonomy
from ..windows import estimate_tokens
from .base import CallSpec, Mode, ParsedCall
from .policy_text import policy_kwarg_variants
from .reading import (
    DEFAULT_MAX_COMPLETION_CHARS,
    RESPONSE,
    USER,
    Clean,
    Expect,
    completion_message,
    decide,
    scan_answer,
    split_categories,
)
from .scores import NEMOTRON_LABELS, attach_scores

if TYPE_CHECKING:
    from ..policy import Policy

_CLEAN_LINE: Final = re.compile(r"(user safety|response safety|safety categories)[ \t]*+:", re.IGNORECASE)
_KEYS: Final = {"user safety": USER, "response safety": RESPONSE, "safety categories": "categories"}

# Structured output (vLLM only): the verdict lines the model may emit. Category names: up to four, 40 printable
# ASCII characters each. A THINK trace: printable text of any length (any printable Unicode, angle brackets
# included: NVIDIA's published traces exceed 900 characters and 8 of 37 contain < or >), built so that it can
# never contain ``</think>`` itself. Its length is bounded by the answer budget (max_tokens), not the regex: a
# bounded repetition of this pattern costs xgrammar about 0.05 ms per unit of bound on every token (100 ms a
# token at 2000), an unbounded one a fraction of a millisecond. ``Nemotron35Format(max_trace_chars=N)`` bounds
# it anyway, which forces even a degenerate model (the test tier's random one) to close its trace.
_CATEGORY_RE = r"[A-Za-z0-9 /()&'._-]{1,40}"
_NOT_CTRL = r"\x00-\x08\x0b-\x1f\x7f"
_THINK_TAIL = "/think>"


def trace_regex(units: int | None = None) -> str:
    """Printable text with no ``</think>`` in it: the complement of one word, from its matching automaton.

    After a ``<`` the text may run on through a prefix of ``/think>`` and then either restart at another ``<``
    or leave with any character that does not continue the prefix; it may also end inside a prefix.
    ``units``: at most this many characters or ``<`` runs (and at most five ``<`` in a row); None: unbounded."""

    def prefixes(last: int) -> str:  # an optional prefix of "/think" ("", "/", "/t", ... "/think")
        out = ""
        for ch in reversed(_THINK_TAIL[:last]):
            out = f"(?:{re.escape(ch)}{out})?"
        return out

    leave = []
    for k, ch in enumerate(_THINK_TAIL):
        leave.append(re.escape(_THINK_TAIL[:k]) + f"[^{re.escape(ch)}<{_NOT_CTRL}]")
    restart = prefixes(len(_THINK_TAIL) - 1) + "<"
    runs = "*" if units is None else "{0,4}"
    block = f"<(?:{restart}){runs}(?:{'|'.join(leave)})"
    tail = f"(?:<(?:{restart}){runs}{prefixes(len(_THINK_TAIL) - 1)})?"
    count = "*" if units is None else f"{{0,{units}}}"
    return f"(?:[^<{_NOT_CTRL}]|{block}){count}{tail}"


# Tokens for the answer under structured output. THINK: traces run 38-184 tokens (NeMo's measurements) and
# NVIDIA's longest printed ones are a few hundred; 1280 closes them all, and a cut answer is an error.
CONSTRAINED_MAX_TOKENS = {"fast": 48, "categories": 256, "think": 1280}
# Enough for each mode's answer; THINK traces measured at 38-184 tokens, 1024 leaves room to close them.
DEFAULT_MAX_TOKENS: Mapping[str, int] = {"fast": 32, "categories": 128, "think": 1024}
_VERDICT_RE = "(safe|unsafe)"

# What one call costs beyond the judged texts, in estimated tokens (windows.estimate_tokens of the template
# pieces in reference/nemotron-formats.md 1.4 and 9, rounded up): the classifier introduction, the built-in
# taxonomy, and the rest (conversation markers, format block, tail, flags, turn markup). A custom policy
# replaces the introduction and the taxonomy; a custom taxonomy replaces the taxonomy.
_INTRO_TOKENS: Final = 160
_TAXONOMY_TOKENS: Final = 160
_REST_TOKENS: Final = 240


class Nemotron35Format:
    """The default format: server-side template, kwargs, plain verdict lines.

    ``max_trace_chars``: with ``constrain_output``, bound a THINK trace to this many characters in the regex
    (see ``trace_regex``); None (the default) leaves the answer budget to bound it.
    """

    name = "nemotron-3.5"

    def __init__(self, *, max_trace_chars: int | None = None) -> None:
        if max_trace_chars is not None and max_trace_chars < 1:
            raise ValueError("max_trace_chars must be at least 1")
        self.max_trace_chars = max_trace_chars

    def policy_variants(self, policy: Policy, *, think: bool) -> list[dict[str, str]]:
        """``custom_policy`` / ``custom_taxonomy`` kwargs (see :mod:`.policy_text`)."""
        return policy_kwarg_variants(policy, think=think)

    def max_tokens(self, mode: Mode, *, constrained: bool) -> int:
        """``DEFAULT_MAX_TOKENS``, or the larger ``CONSTRAINED_MAX_TOKENS`` under a grammar."""
        return (CONSTRAINED_MAX_TOKENS if constrained else DEFAULT_MAX_TOKENS)[mode]

    def build(self, spec: CallSpec, model: str) -> dict[str, Any]:
        if not spec.prompt.strip():
            # The NIM answers 500 to an image without text; the template needs a user text in any case.
            raise ValueError(
                "a Nemotron 3.5 call needs user text (the guard supplies one for image-only turns)"
            )
        messages: list[dict[str, Any]] = []
        for role, text in spec.history:
            messages.append({"role": role, "content": text})
        if spec.image is not None:
            user_content: Any = [
                {"type": "image_url", "image_url": {"url": spec.image.as_url()}},
                {"type": "text", "text": spec.prompt},
            ]
        else:
            user_content = spec.prompt
        messages.append({"role": "user", "content": user_content})
        if spec.response is not None:
            messages.append({"role": "assistant", "content": spec.response})
        kwargs: dict[str, Any] = {
            "enable_thinking": spec.mode == "think",
            "request_categories": "/categories" if spec.categories else "/no_categories",
        }
        kwargs.update(spec.policy_kwargs)
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": spec.max_tokens,
            "chat_template_kwargs": kwargs,
        }
        if spec.constrain_output:
            body["structured_outputs"] = {"regex": verdict_regex(spec, max_trace_chars=self.max_trace_chars)}
        return body

    def parse(self, completion: Mapping[str, Any], spec: CallSpec) -> ParsedCall:
        content, reasoning, finish = completion_message(completion)
        parsed = parse_verdict_text(
            content,
            reasoning_content=reasoning,
            expect_response=spec.response is not None,
            expect_user=spec.judge_prompt,
            history=bool(spec.history),
            taxonomy=spec.taxonomy or BUILTIN_TAXONOMY,
            truncated=finish == "length",
            think=spec.mode == "think",
            max_completion_chars=spec.max_completion_chars,
        )
        return attach_scores(parsed, completion, NEMOTRON_LABELS)

    def prompt_overhead_tokens(self, policy_kwargs: Mapping[str, str]) -> int:
        """What a call costs beyond the judged texts: the template's pieces and the policy text."""
        if policy_kwargs.get("custom_policy"):
            return _REST_TOKENS + estimate_tokens(policy_kwargs["custom_policy"])
        if policy_kwargs.get("custom_taxonomy"):
            return _REST_TOKENS + _INTRO_TOKENS + estimate_tokens(policy_kwargs["custom_taxonomy"])
        return _REST_TOKENS + _INTRO_TOKENS + _TAXONOMY_TOKENS


def parse_verdict_text(
    content: str,
    *,
    reasoning_content: str | None = None,
    expect_response: bool = False,
    expect_user: bool = True,
    history: bool = False,
    taxonomy: Taxonomy = BUILTIN_TAXONOMY,
    truncated: bool = False,
    think: bool = False,
    max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
) -> ParsedCall:
    """Read the model's output text by rules R1-R8 (:mod:`.reading`). ``truncated``: ``finish_reason`` was
    ``"length"``. Returns the verdict, or raises :class:`VerdictParseError` when it is neither a clean safe
    answer nor holds an unsafe reading."""
    answer = scan_answer(content, reasoning_content, cut=truncated, limit=max_completion_chars)
    expect = Expect(user=expect_user, response=expect_response, history=history)
    return decide(answer, _clean_lines(answer.outside), expect, taxonomy, think=think)


def _clean_lines(text: str) -> Clean | str:
    """R5 for this format: every non-blank line one field line, each field once, values exactly safe/unsafe."""
    fields: dict[str, str] = {}
    categories: tuple[str, ...] = ()
    seen: set[str] = set()
    # every Unicode line break ends a line; blank lines are skipped in C (a clean answer has at most three
    # others, so the loop below ends by the fourth: a duplicate or an unexpected line)
    for line in filter(None, map(str.strip, text.splitlines())):
        m = _CLEAN_LINE.match(line)
        if m is None:
            return f"unexpected line in verdict: {line[:80]!r}"
        name = m.group(1)
        key = _KEYS[name.lower()]
        if key in seen:
            return f"duplicate {name.title()} field"
        seen.add(key)
        value = line[m.end() :].strip()
        if key == "categories":
            categories = tuple(split_categories(value))
            continue
        if value.lower() not in ("safe", "unsafe"):
            return f"{name.title()} must be 'safe' or 'unsafe', got {value[:20]!r}"
        fields[key] = value.lower()
    return Clean(fields, categories)


def verdict_regex(spec: CallSpec, *, max_trace_chars: int | None = None) -> str:
    """A regex for vLLM's ``structured_outputs`` that only admits a well-formed verdict for this call."""
    out = f"User Safety: {_VERDICT_RE}"
    if spec.response is not None:
        out += f"\nResponse Safety: {_VERDICT_RE}"
    if spec.categories:
        out += f"(\nSafety Categories: {_CATEGORY_RE}(, {_CATEGORY_RE}){{0,3}})?"
    if spec.mode == "think":
        out = rf"<think>\n{trace_regex(max_trace_chars)}\n</think>" + out
    return out


__all__ = [
    "CONSTRAINED_MAX_TOKENS",
    "DEFAULT_MAX_TOKENS",
    "Nemotron35Format",
    "parse_verdict_text",
    "trace_regex",
    "verdict_regex",
]
