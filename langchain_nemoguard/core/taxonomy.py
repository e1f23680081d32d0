"""The built-in Aegis 2.0 taxonomy and loose category-name matching.

The model emits category *names* (not S-codes) and does not always spell them as the taxonomy does: NVIDIA's
own blog shows "Controlled Substances" for "Controlled/Regulated Substances". We map what the model says onto
the canonical names when the match is unambiguous and keep anything else verbatim - an unknown category is
still a reason the text was judged unsafe, so it must never be dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# Order and spelling as in NVIDIA's NemoGuard/Nemotron prompt templates (23 categories).
AEGIS_CATEGORIES: tuple[str, ...] = (
    "Violence",
    "Sexual",
    "Criminal Planning/Confessions",
    "Guns and Illegal Weapons",
    "Controlled/Regulated Substances",
    "Suicide and Self Harm",
    "Sexual (minor)",
    "Hate/Identity Hate",
    "PII/Privacy",
    "Harassment",
    "Threat",
    "Profanity",
    "Needs Caution",
    "Other",
    "Manipulation",
    "Fraud/Deception",
    "Malware",
    "High Risk Gov Decision Making",
    "Political/Misinformation/Conspiracy",
    "Copyright/Trademark/Plagiarism",
    "Unauthorized Advice",
    "Illegal Activity",
    "Immoral/Unethical",
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _words(name: str) -> tuple[str, ...]:
    return tuple(w.casefold() for w in _WORD.findall(name))


def _key(name: str) -> str:
    return "".join(_words(name))


class Taxonomy:
    """A list of category names with a forgiving lookup.

    ``normalise("controlled substances")`` returns ``"Controlled/Regulated Substances"``: first an exact match
    ignoring case and punctuation, then a unique canonical name whose words include all the given words.
    """

    __slots__ = ("_by_key", "_words", "names")

    def __init__(self, names: Iterable[str]) -> None:
        self.names: tuple[str, ...] = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
        self._by_key = {_key(n): n for n in self.names}
        self._words = [(set(_words(n)), n) for n in self.names]

    def normalise(self, name: str) -> str:
        name = name.strip().strip(".").strip()
        exact = self._by_key.get(_key(name))
        if exact is not None:
            return exact
        given = set(_words(name))
        if not given:
            return name
        candidates = [canon for words, canon in self._words if given <= words]
        return candidates[0] if len(candidates) == 1 else name

    def normalise_all(self, names: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(self.normalise(n) for n in names if n.strip()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._by_key


BUILTIN_TAXONOMY = Taxonomy(AEGIS_CATEGORIES)


def category_name(entry: str) -> str:
    """The name part of a custom-taxonomy entry: ``"Trade Secret Leak: unreleased code"`` -> the name."""
    entry = entry.strip().lstrip("-*").strip()
    entry = re.sub(r"^S\d+\s*:\s*", "", entry)
    for sep in (":", " ("):
        if sep in entry:
            entry = entry.split(sep, 1)[0]
    return entry.strip().rstrip(".").strip()
