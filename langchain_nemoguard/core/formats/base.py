"""The seam between the guard and a model's wire format.

A :class:`ModelFormat` turns one :class:`CallSpec` (a user text, at most one image, optionally a response, and
the policy's kwargs) into a chat-completions body, and turns the completion back into a :class:`ParsedCall`.
Nemotron 3.5 builds its prompt server-side from kwargs; the older NemoGuard 8B (JSON) and Reasoning-4B formats
build the prompt on the client. Both fit this interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..images import PreparedImage
from ..taxonomy import Taxonomy

Mode = Literal["fast", "categories", "think"]
MODES: tuple[Mode, ...] = ("fast", "categories", "think")


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


class ModelFormat(Protocol):
    name: str

    def build(self, spec: CallSpec, model: str) -> dict[str, Any]:
        """The JSON body for ``POST /chat/completions``."""
        ...

    def parse(self, completion: Mapping[str, Any], spec: CallSpec) -> ParsedCall:
        """Read a chat completion; raise ``VerdictParseError`` for anything not exactly a verdict."""
        ...
