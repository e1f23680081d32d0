"""Nemotron's Aegis 2.0 categories as OpenAI moderation categories, for ``POST /v1/moderations``.

OpenAI's moderation result has thirteen fixed categories; Nemotron 3.5 names up to 23 Aegis categories (or a
custom policy's). The mapping below is the one documented in ``docs/service.md`` (a test keeps the two equal).
A category with no OpenAI counterpart sets no OpenAI category, but the result is still ``flagged`` when the
policy blocks: ``flagged`` follows the policy's decision, never the mapping, and the Aegis names are always in
the result's ``nemotron`` field. A subcategory also sets its parent (``sexual/minors`` sets ``sexual``), as
OpenAI's own results do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

OPENAI_CATEGORIES: Final = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
"""OpenAI's moderation categories, in its order; every result lists all of them."""

IMAGE_CATEGORIES: Final = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)
"""The categories OpenAI also scores images for (``category_applied_input_types``)."""

AEGIS_TO_OPENAI: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "Violence": ("violence",),
        "Sexual": ("sexual",),
        "Criminal Planning/Confessions": ("illicit",),
        "Guns and Illegal Weapons": ("illicit/violent", "illicit"),
        "Controlled/Regulated Substances": ("illicit",),
        "Suicide and Self Harm": ("self-harm",),
        "Sexual (minor)": ("sexual/minors", "sexual"),
        "Hate/Identity Hate": ("hate",),
        "PII/Privacy": (),
        "Harassment": ("harassment",),
        "Threat": ("harassment/threatening", "harassment"),
        "Profanity": (),
        "Needs Caution": (),
        "Other": (),
        "Manipulation": (),
        "Fraud/Deception": ("illicit",),
        "Malware": ("illicit",),
        "High Risk Gov Decision Making": (),
        "Political/Misinformation/Conspiracy": (),
        "Copyright/Trademark/Plagiarism": (),
        "Unauthorized Advice": (),
        "Illegal Activity": ("illicit",),
        "Immoral/Unethical": (),
    }
)
"""Aegis category -> the OpenAI categories it sets (empty: none; the Aegis name is still reported)."""


def openai_categories(aegis: Iterable[str]) -> set[str]:
    """The OpenAI categories a verdict's Aegis categories set (custom categories set none)."""
    out: set[str] = set()
    for name in aegis:
        out.update(AEGIS_TO_OPENAI.get(name, ()))
    return out


__all__ = ["AEGIS_TO_OPENAI", "IMAGE_CATEGORIES", "OPENAI_CATEGORIES", "openai_categories"]
