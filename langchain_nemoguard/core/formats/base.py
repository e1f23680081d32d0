"""The seam between the guard and a model's wire format.

A :class:`ModelFormat` turns one :class:`CallSpec` (a user text, at most one image, optionally a response, and
the policy's kwargs) into a chat-completions body, and turns the completion back into a :class:`ParsedCall`.
It also owns the rest of the wire: how a policy is phrased (``policy_variants``) and how many tokens an answer
may take in each mode (``max_tokens``).
Nemotron 3.5 builds its prompt server-side from kwargs; the older NemoGuard 8B (JSON) and Reasoning-4B formats
build the prompt on the client. Both fit this interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """The model's answer to one call."""

    user_safe: bool
    response_safe: bool | None
    categories: tuple[str, ...]
    reasoning: str | None
    raw: str
    simulator: bool = False  # answered by the interface simulator (set by the guard, see core/simulator_mark.py)
    # P(unsafe) of each rating, read from the answer's logprobs (formats/scores.py); None: unknown
    user_score: float | None = None
    response_score: float | None = None


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
        """Read a chat completion; raise ``VerdictParseError`` for anything not exactly a verdict."""
        ...
