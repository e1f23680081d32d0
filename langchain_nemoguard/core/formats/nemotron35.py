"""Nemotron 3.5 Content Safety: request builder and strict verdict parser.

The model's chat template builds the classifier prompt on the server. The client sends only the turns to judge
(a user turn, optionally an assistant turn) and steers the template with ``chat_template_kwargs``. Rules that
come from the model's documented interface (see ``reference/nemotron-formats.md``):

* no system message (the template would silently drop it); roles alternate starting with ``user``;
* the image part goes before the text part, at most one image per call, never an image without text;
* the assistant turn is present only for response checks: its presence is what makes the model rate it;
* the verdict follows the trace directly (``</think>User Safety: ...``) and may come in ``reasoning_content``.

The parser is at least as strict as NeMo Guardrails' ``nemotron_content_safety_parse_*``: it reads only the
model's output, rejects duplicate fields, requires each verdict at a line start with exactly ``safe`` or
``unsafe``, requires ``Response Safety`` when a response was sent (and refuses it when none was), rejects any
other line, and treats an unclosed ``<think>`` or ``finish_reason == "length"`` as a truncated answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import VerdictParseError
from ..taxonomy import BUILTIN_TAXONOMY, Taxonomy
from .base import CallSpec, Mode, ParsedCall
from .policy_text import policy_kwarg_variants
from .scores import NEMOTRON_LABELS, attach_scores

if TYPE_CHECKING:
    from ..policy import Policy

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_FIELD_ANYWHERE = {
    "user": re.compile(r"User\s+Safety\s*:\s*(safe|unsafe)\b", re.IGNORECASE),
    "response": re.compile(r"Response\s+Safety\s*:\s*(safe|unsafe)\b", re.IGNORECASE),
}
_LINE = re.compile(r"^(User Safety|Response Safety|Safety Categories)\s*:\s*(.*?)\s*$", re.IGNORECASE)

# Structured output (vLLM only): the verdict lines the model may emit, in printable ASCII so that every character
# is one token even with a byte-fallback tokenizer and the answer always fits CONSTRAINED_MAX_TOKENS. Category
# names: up to four, 40 characters each. A THINK trace: up to 900 characters without angle brackets.
_CATEGORY_RE = r"[A-Za-z0-9 /()&'._-]{1,40}"
_TRACE_RE = r"[\n -;=?-~]{1,900}"
CONSTRAINED_MAX_TOKENS = {"fast": 48, "categories": 256, "think": 1280}
# Enough for each mode's answer; THINK traces measured at 38-184 tokens, 1024 leaves room to close them.
DEFAULT_MAX_TOKENS: Mapping[str, int] = {"fast": 32, "categories": 128, "think": 1024}
_VERDICT_RE = "(safe|unsafe)"


class Nemotron35Format:
    """The default format: server-side template, kwargs, plain verdict lines."""

    name = "nemotron-3.5"

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
            body["structured_outputs"] = {"regex": verdict_regex(spec)}
        return body

    def parse(self, completion: Mapping[str, Any], spec: CallSpec) -> ParsedCall:
        try:
            choice = completion["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise VerdictParseError("the response is not a chat completion (no choices[0].message)") from None
        content = message.get("content") or ""
        reasoning_field = message.get("reasoning_content") or message.get("reasoning") or None
        if not isinstance(content, str) or (
            reasoning_field is not None and not isinstance(reasoning_field, str)
        ):
            raise VerdictParseError("message content is not text")
        finish = choice.get("finish_reason")
        parsed = parse_verdict_text(
            content,
            reasoning_content=reasoning_field,
            expect_response=spec.response is not None,
            taxonomy=spec.taxonomy or BUILTIN_TAXONOMY,
            truncated=finish == "length",
        )
        return attach_scores(parsed, completion, NEMOTRON_LABELS)


def parse_verdict_text(
    content: str,
    *,
    reasoning_content: str | None = None,
    expect_response: bool = False,
    taxonomy: Taxonomy = BUILTIN_TAXONOMY,
    truncated: bool = False,
) -> ParsedCall:
    """Parse the model's output text. Raises :class:`VerdictParseError` on any deviation."""
    raw = content
    if truncated:
        raise VerdictParseError("finish_reason is 'length': the answer was cut off", raw, truncated=True)
    traces = [reasoning_content.strip()] if reasoning_content and reasoning_content.strip() else []

    # 1. Take closed traces out; what is left must hold no trace markers at all.
    text = content
    if "think>" in content.lower():
        traces += [t.strip() for t in _THINK_BLOCK.findall(content)]
        text = _THINK_BLOCK.sub("\n", content)
        low = text.lower()
        if "<think>" in low:
            raise VerdictParseError("unterminated <think> block", raw, truncated=True)
        _reject_duplicates(text, raw)
        if "</think>" in low:
            # The template may open the trace in the prompt, so the output can start inside it.
            if low.count("</think>") > 1:
                raise VerdictParseError("more than one </think> marker", raw)
            cut = low.index("</think>")
            traces.append(text[:cut].strip())
            text = text[cut + len("</think>") :]
    else:
        _reject_duplicates(text, raw)

    # 3. Every non-empty line must be one of the three fields, each at most once.
    fields: dict[str, str] = {}
    # split on "\n" only: str.splitlines() also breaks at \x1c-\x1e, \x85 and \u2028, which may sit inside a name
    for line in text.strip().split("\n"):
        if not line.strip():
            continue
        m = _LINE.match(line.strip())
        if m is None:
            raise VerdictParseError(f"unexpected line in verdict: {line.strip()[:80]!r}", raw)
        key = m.group(1).lower()
        if key in fields:
            raise VerdictParseError(f"duplicate {m.group(1)} field", raw)
        fields[key] = m.group(2)

    user = _rating(fields, "user safety", raw)
    if user is None:
        raise VerdictParseError("missing User Safety", raw)
    response = _rating(fields, "response safety", raw)
    if expect_response and response is None:
        raise VerdictParseError("a response was sent but Response Safety is missing", raw)
    if not expect_response and response is not None:
        raise VerdictParseError("Response Safety present although no response was sent", raw)

    categories: tuple[str, ...] = ()
    unsafe = not user or response is False
    if "safety categories" in fields and unsafe:
        names = [c.strip() for c in fields["safety categories"].split(",")]
        categories = tuple(taxonomy.normalise_all([c for c in names if c]))
    reasoning = "\n\n".join(t for t in traces if t) or None
    return ParsedCall(
        user_safe=user, response_safe=response, categories=categories, reasoning=reasoning, raw=raw
    )


def _reject_duplicates(text: str, raw: str) -> None:
    """Duplicates anywhere outside closed trace blocks are an error, whichever field is being read (as in
    NeMo Guardrails; an orphan trace before a lone </think> counts as outside)."""
    for name, pattern in _FIELD_ANYWHERE.items():
        if len(pattern.findall(text)) > 1:
            raise VerdictParseError(f"duplicate {name.title()} Safety field", raw)


def _rating(fields: dict[str, str], key: str, raw: str) -> bool | None:
    if key not in fields:
        return None
    value = fields[key].strip().lower()
    if value not in ("safe", "unsafe"):
        raise VerdictParseError(f"{key.title()} must be 'safe' or 'unsafe', got {fields[key][:20]!r}", raw)
    return value == "safe"


def verdict_regex(spec: CallSpec) -> str:
    """A regex for vLLM's ``structured_outputs`` that only admits a well-formed verdict for this call."""
    out = f"User Safety: {_VERDICT_RE}"
    if spec.response is not None:
        out += f"\nResponse Safety: {_VERDICT_RE}"
    if spec.categories:
        out += f"(\nSafety Categories: {_CATEGORY_RE}(, {_CATEGORY_RE}){{0,3}})?"
    if spec.mode == "think":
        out = rf"<think>\n{_TRACE_RE}\n</think>" + out
    return out
