"""Llama-3.1-NemoGuard-8B-ContentSafety (v2/v3): a client-built prompt and a JSON verdict.

Unlike Nemotron 3.5, this model has no server-side safety template: the whole classifier prompt travels as one
user message (NVIDIA's published template, reproduced exactly), and the answer is a JSON object. It is
text-only. The parser follows NeMo Guardrails' ``nemoguard_parse_*`` (``json.loads`` of the whole answer,
exact keys, only ``safe`` is safe) and is stricter where that one is loose: a missing key, a wrong type or
an unexpected key is an error, never a verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, VerdictParseError
from ..taxonomy import AEGIS_CATEGORIES, BUILTIN_TAXONOMY, category_name
from .base import CallSpec, Mode, ParsedCall
from .nemotron35 import DEFAULT_MAX_TOKENS
from .policy_text import policy_kwarg_variants
from .scores import JSON_LABELS, attach_scores

if TYPE_CHECKING:
    from ..policy import Policy

_TASK = (
    "Task: Check if there is unsafe content in the user or agent messages in the below conversation in accordance "
    "with our safety policy with the below categories. Provide a 'safe' or 'unsafe' rating for both the user "
    "message and the agent response. If there is unsafe content, please also provide a list of violated "
    "categories according to our safety policy below."
)
_INSTRUCTION = (
    "Provide your safety assessment for the above conversation in the below output JSON format:\n"
    '{"User Safety": safe or unsafe rating for the user message, "Response Safety": safe or unsafe rating for '
    'the agent response. Omit if no agent response present. "Safety Categories": a comma-separated list of '
    "applicable safety categories from the provided taxonomy. Omit if all safe.}\n\n"
    "Do not include anything other than the output JSON in your response.\nOutput JSON: "
)
_KEYS = {"User Safety", "Response Safety", "Safety Categories"}


class NemoGuard8BFormat:
    """``NemoGuard(model_format=NemoGuard8BFormat(), model="nvidia/llama-3.1-nemoguard-8b-content-safety")``."""

    name = "nemoguard-8b"

    def policy_variants(self, policy: Policy, *, think: bool) -> list[dict[str, str]]:
        """The same kwargs as Nemotron 3.5: ``build`` reads the category names back from ``custom_taxonomy``
        and refuses a natural-language policy."""
        return policy_kwarg_variants(policy, think=think)

    def max_tokens(self, mode: Mode, *, constrained: bool) -> int:
        """The same budgets as Nemotron 3.5's unconstrained answers."""
        return DEFAULT_MAX_TOKENS[mode]

    def build(self, spec: CallSpec, model: str) -> dict[str, Any]:
        if spec.image is not None:
            raise InvalidInputError("the NemoGuard 8B model is text-only: it cannot judge images")
        if "custom_policy" in spec.policy_kwargs:
            raise InvalidInputError(
                "the NemoGuard 8B model takes a custom taxonomy, not a natural-language policy"
            )
        if "custom_taxonomy" in spec.policy_kwargs:
            names = [
                category_name(line)
                for line in spec.policy_kwargs["custom_taxonomy"].split("\n\n")[0].splitlines()
                if line.strip()
            ]
        else:
            names = list(AEGIS_CATEGORIES)
        categories = "\n".join(f"S{i}: {name}." for i, name in enumerate(names, 1))
        conversation = f"user: {spec.prompt}"
        if spec.response is not None:
            conversation += f"\n\nresponse: agent: {spec.response}"
        prompt = (
            f"{_TASK}\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
            f"<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n{_INSTRUCTION}"
        )
        return {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": spec.max_tokens,
        }

    def parse(self, completion: Mapping[str, Any], spec: CallSpec) -> ParsedCall:
        try:
            choice = completion["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise VerdictParseError("the response is not a chat completion (no choices[0].message)") from None
        if choice.get("finish_reason") == "length":
            raise VerdictParseError(
                "finish_reason is 'length': the answer was cut off", str(content), truncated=True
            )
        if not isinstance(content, str):
            raise VerdictParseError("message content is not text")
        try:
            data = json.loads(content)
        except ValueError:
            raise VerdictParseError("the answer is not a JSON object", content) from None
        if not isinstance(data, dict) or not set(data) <= _KEYS:
            raise VerdictParseError("the answer has unexpected keys or is not an object", content)
        user = _rating(data, "User Safety", content)
        if user is None:
            raise VerdictParseError("missing User Safety", content)
        response = _rating(data, "Response Safety", content)
        if (spec.response is not None) != (response is not None):
            raise VerdictParseError(
                "Response Safety must be present exactly when a response was sent", content
            )
        cats: tuple[str, ...] = ()
        raw_cats = data.get("Safety Categories")
        if raw_cats is not None and not isinstance(raw_cats, str):
            raise VerdictParseError("Safety Categories must be a comma-separated string", content)
        if raw_cats and (not user or response is False):
            taxonomy = spec.taxonomy or BUILTIN_TAXONOMY
            cats = tuple(taxonomy.normalise_all([c for c in raw_cats.split(",") if c.strip()]))
        parsed = ParsedCall(user_safe=user, response_safe=response, categories=cats, reasoning=None, raw=content)
        return attach_scores(parsed, completion, JSON_LABELS)


def _rating(data: Mapping[str, Any], key: str, raw: str) -> bool | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str) or value.strip().lower() not in ("safe", "unsafe"):
        raise VerdictParseError(f"{key} must be 'safe' or 'unsafe', got {str(value)[:20]!r}", raw)
    return value.strip().lower() == "safe"
