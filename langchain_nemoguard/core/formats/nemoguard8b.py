"""Llama-3.1-NemoGuard-8B-ContentSafety (v2/v3): a client-built prompt and a JSON verdict.

Unlike Nemotron 3.5, this model has no server-side safety template: the whole classifier prompt travels as one
user message (NVIDIA's published template, reproduced exactly), and the answer is a JSON object. It is
text-only. The prompt is NVIDIA's template as NeMo Guardrails' prompts.yml sends it, ending byte-exactly in
``Output JSON:`` (no trailing space: the YAML block's last newline is dropped by Jinja).

Reading follows the rules R1-R8 in :mod:`.reading`. What this format adds:

* unsafe readings (R4) also come from the JSON itself: a ``User Safety`` or ``Response Safety`` value that is a
  string but not ``safe`` (after lowering) is unsafe, as NeMo Guardrails' ``nemoguard_parse_*`` reads it;
* the clean shape (R5) is NeMo's ``json.loads`` of the whole answer, plus: an object, keys only ``User Safety``,
  ``Response Safety``, ``Safety Categories`` (exact), verdict values strings reading ``safe``/``unsafe``, the
  categories a comma-separated string;
* a response-only answer (``{"Response Safety": ...}``) is read: its unsafe value counts, and it is safe when
  the call did not need the user verdict (its prompt is judged by another call).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..taxonomy import AEGIS_CATEGORIES, BUILTIN_TAXONOMY, category_name
from ..windows import estimate_tokens
from .base import CallSpec, Mode, ParsedCall
from .policy_text import policy_kwarg_variants
from .reading import RESPONSE, USER, Clean, Expect, completion_message, decide, scan_answer, split_categories
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
    "Do not include anything other than the output JSON in your response.\nOutput JSON:"
)
_KEYS = {"User Safety", "Response Safety", "Safety Categories"}
_VERDICT_KEYS = {"User Safety": USER, "Response Safety": RESPONSE}
# NeMo Guardrails sends max_tokens 50; a full answer (both ratings, several categories) needs about 45 Llama
# tokens, so every mode gets room to finish it: this model has no fast mode of its own.
ANSWER_TOKENS = 128
_MARKUP_TOKENS = 40  # the Llama 3.1 chat template around the one user message


class NemoGuard8BFormat:
    """``NemoGuard(model_format=NemoGuard8BFormat(), model="nvidia/llama-3.1-nemoguard-8b-content-safety")``."""

    name = "nemoguard-8b"

    def policy_variants(self, policy: Policy, *, think: bool) -> list[dict[str, str]]:
        """The same kwargs as Nemotron 3.5: ``build`` reads the category names back from ``custom_taxonomy``
        and refuses a natural-language policy."""
        return policy_kwarg_variants(policy, think=think)

    def max_tokens(self, mode: Mode, *, constrained: bool) -> int:
        """``ANSWER_TOKENS`` in every mode: room for a full JSON answer (this model has no fast mode)."""
        return ANSWER_TOKENS

    def build(self, spec: CallSpec, model: str) -> dict[str, Any]:
        if spec.image is not None:
            raise InvalidInputError("the NemoGuard 8B model is text-only: it cannot judge images")
        return {
            "model": model,
            "messages": [
                {"role": "user", "content": self._prompt(spec.prompt, spec.response, spec.policy_kwargs)}
            ],
            "temperature": 0,
            "max_tokens": spec.max_tokens,
        }

    def _prompt(self, prompt: str, response: str | None, policy_kwargs: Mapping[str, str]) -> str:
        if "custom_policy" in policy_kwargs:
            raise InvalidInputError(
                "the NemoGuard 8B model takes a custom taxonomy, not a natural-language policy"
            )
        if "custom_taxonomy" in policy_kwargs:
            names = [
                category_name(line)
                for line in policy_kwargs["custom_taxonomy"].split("\n\n")[0].splitlines()
                if line.strip()
            ]
        else:
            names = list(AEGIS_CATEGORIES)
        categories = "\n".join(f"S{i}: {name}." for i, name in enumerate(names, 1))
        conversation = f"user: {prompt}"
        if response is not None:
            conversation += f"\n\nresponse: agent: {response}"
        return (
            f"{_TASK}\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
            f"<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n{_INSTRUCTION}"
        )

    def prompt_overhead_tokens(self, policy_kwargs: Mapping[str, str]) -> int:
        """What a call costs beyond the judged texts: the whole client-built prompt and its chat markup."""
        return _MARKUP_TOKENS + estimate_tokens(self._prompt("", "", policy_kwargs))

    def parse(self, completion: Mapping[str, Any], spec: CallSpec) -> ParsedCall:
        content, reasoning, finish = completion_message(completion)
        answer = scan_answer(content, reasoning, cut=finish == "length", limit=spec.max_completion_chars)
        data: Any = None
        with contextlib.suppress(
            ValueError, RecursionError
        ):  # not JSON: no clean shape, readings still count
            data = json.loads(answer.outside)
        extra_unsafe: set[str] = set()
        categories: list[str] | None = None
        if isinstance(data, dict):
            for key, name in _VERDICT_KEYS.items():
                value = data.get(key)
                if isinstance(value, str) and value.lower() != "safe":
                    extra_unsafe.add(name)  # NeMo Guardrails: anything but "safe" is unsafe
            raw_cats = data.get("Safety Categories")
            if isinstance(raw_cats, str):
                categories = split_categories(raw_cats)
            elif isinstance(raw_cats, list) and all(isinstance(c, str) for c in raw_cats):
                categories = [n for c in raw_cats for n in split_categories(c)]
        expect = Expect(user=spec.judge_prompt, response=spec.response is not None)
        parsed = decide(
            answer,
            _clean_json(data),
            expect,
            spec.taxonomy or BUILTIN_TAXONOMY,
            extra_unsafe=extra_unsafe,
            categories=categories,
        )
        return attach_scores(parsed, completion, JSON_LABELS)


def _clean_json(data: Any) -> Clean | str:
    """R5 for this format: one JSON object, exact keys, string values, verdicts exactly safe or unsafe."""
    if data is None:
        return "the answer is not a JSON object"
    if not isinstance(data, dict) or not set(data) <= _KEYS:
        return "the answer has unexpected keys or is not an object"
    fields: dict[str, str] = {}
    for key, name in _VERDICT_KEYS.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, str) or value.lower() not in ("safe", "unsafe"):
            return f"{key} must be 'safe' or 'unsafe', got {str(value)[:20]!r}"
        fields[name] = value.lower()
    raw_cats = data.get("Safety Categories", "")
    if not isinstance(raw_cats, str):  # an explicit null too: NeMo Guardrails' parser fails on it
        return "Safety Categories must be a comma-separated string"
    return Clean(fields, tuple(split_categories(raw_cats)))
