"""The seam between the guard and a model's wire format.

A :class:`ModelFormat` turns one :class:`CallSpec` (a user text, at most one image, optionally a response, and
the policy's kwargs) into a chat-completions body, and turns the completion back into a :class:`ParsedCall`.
It also owns the rest of the wire: how a policy is phrased (``policy_variants``) and how many tokens an answer
may take in each mode (``max_tokens``).
Nemotron 3.5 builds its prompt server-side from kwargs; the older NemoGuard 8B (JSON) and Reasoning-4B formats
build the prompt on the client. Both fit this interface.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidInputError
from ..images import PreparedImage
from ..modes import MODES, Mode
from ..taxonomy import Taxonomy

if TYPE_CHECKING:
    from ..policy import Policy

__all__ = ["MODES", "CallSpec", "Mode", "ModelFormat", "ParsedCall"]


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One model call: what to judge and how."""

    prompt: str
    image: PreparedImage | None = None
    response: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    mode: Mode = "categories"
    categories: bool = True
    policy_kwargs: Mapping[str, str] = field(default_factory=dict)
    taxonomy: Taxonomy | None = None
    max_tokens: int = 128
    constrain_output: bool = False
    # False when ``prompt`` is context whose own verdict comes from another call of the same check: the answer
    # then need not rate it to be safe (an unsafe rating of it still counts).
    judge_prompt: bool = True
    max_completion_chars: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """The model's answer to one call.

    ``user_safe`` / ``response_safe``: ``False`` for an unsafe reading, ``True`` for a clean safe one, ``None``
    when the answer did not rate that part (not asked, or an unsafe answer too messy to read it).
    ``truncated``: the answer was cut (length, size limit, open trace), so its categories may be incomplete.
    ``clean``: the answer had the format's exact shape (only then may suppressed categories turn it safe).
    ``trace_missing``: a THINK call came back without a reasoning trace (the endpoint ignored the request).
    """

    user_safe: bool | None
    response_safe: bool | None
    categories: tuple[str, ...]
    reasoning: str | None
    raw: str
    truncated: bool = False
    clean: bool = True
    trace_missing: bool = False
    simulator: bool = False  # answered by the interface simulator (set by the guard, see core/simulator_mark.py)
    # P(unsafe) of each rating, read from the answer's logprobs (formats/scores.py); None: unknown
    user_score: float | None = None
    response_score: float | None = None


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The request body as UTF-8 JSON; text the encoder cannot send (a lone surrogate) is a typed error."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            "the text holds a lone surrogate (an unpaired UTF-16 half), which cannot be sent as UTF-8"
        ) from None


class ModelFormat(Protocol):
    """What a model format provides to the guard (``NemoGuard(calls=CallOptions(format=...))``)."""

    name: str

    def policy_variants(self, policy: Policy, *, think: bool) -> list[dict[str, str]]:
        """The policy part of each call a check needs: one dict of ``policy_kwargs`` per call."""
        ...

    def max_tokens(self, mode: Mode, *, constrained: bool) -> int:
        """The answer's token budget in ``mode`` (``constrained``: under a structured-output grammar)."""
        ...

    def build(self, spec: CallSpec, model: str) -> dict[str, Any]:
        """The JSON body for ``POST /chat/completions``."""
        ...

    def parse(self, completion: Mapping[str, Any], spec: CallSpec) -> ParsedCall:
        """Read a chat completion asymmetrically (``formats/reading.py``): an unsafe reading anywhere is
        unsafe; safe only when clean; anything else raises ``VerdictParseError``."""
        ...


# An optional format hook, looked up with getattr so that third-party formats need not define it (core/budget.py
# then assumes a generous 1024 tokens plus the policy text):
#   prompt_overhead_tokens(policy_kwargs) -> int   the tokens a call costs beyond the judged texts
