"""The simulator's editable rule table: category name -> regular expressions.

The table lives in ``rules.yaml`` (package data) so that it can be read and changed without touching code;
``SimulatorConfig.rules_path`` swaps in another file. Matching is deliberately simple - case-insensitive
``re.search`` over the whole text of one turn - because the point is predictability: a test author must be able
to tell from the table alone what verdict a prompt gets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from ..core.taxonomy import AEGIS_CATEGORIES

# Aegis 2.0 names in NVIDIA's template order; categories are reported in this order, as the model lists them.
BUILTIN_TAXONOMY: Final[tuple[str, ...]] = AEGIS_CATEGORIES

_KEY_CHARS = re.compile(r"[^\W_]+")


def category_key(name: str) -> str:
    """A spelling-insensitive key: ``"pii / privacy"`` and ``"PII/Privacy"`` name the same category."""
    return "".join(w.casefold() for w in _KEY_CHARS.findall(name))


class RulesError(ValueError):
    """The rule file is missing, is not the documented shape, or holds a pattern that does not compile."""


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One category that matched one text, with the first piece of text that triggered it (for traces)."""

    category: str
    excerpt: str


class RuleSet:
    """Compiled rules, one combined case-insensitive pattern per category, kept in taxonomy order."""

    __slots__ = ("_by_key", "_rules", "source")

    def __init__(self, table: Mapping[str, Sequence[str]], *, source: str = "<rules>") -> None:
        self.source = source
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for name, patterns in table.items():
            if not isinstance(name, str) or not name.strip():
                raise RulesError(f"{source}: category names must be non-empty strings, got {name!r}")
            if isinstance(patterns, str) or not isinstance(patterns, Sequence):
                raise RulesError(f"{source}: category {name!r} needs a list of patterns")
            for p in patterns:
                if not isinstance(p, str) or not p:
                    raise RulesError(f"{source}: category {name!r} has a non-string or empty pattern: {p!r}")
                try:
                    re.compile(p, re.IGNORECASE)
                except re.error as exc:
                    raise RulesError(f"{source}: category {name!r}: bad pattern {p!r}: {exc}") from None
            if patterns:
                combined = "|".join(f"(?:{p})" for p in patterns)
                compiled.append((name.strip(), re.compile(combined, re.IGNORECASE)))
        order = {category_key(n): i for i, n in enumerate(BUILTIN_TAXONOMY)}
        # Known names in taxonomy order, then the file's own extra categories in file order.
        compiled.sort(key=lambda item: order.get(category_key(item[0]), len(order)))
        self._rules: tuple[tuple[str, re.Pattern[str]], ...] = tuple(compiled)
        self._by_key = {category_key(n): n for n, _ in self._rules}

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<yaml>") -> RuleSet:
        """Parse the ``{version: 1, categories: {name: [pattern, ...]}}`` document."""
        try:
            doc: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RulesError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("categories"), Mapping):
            raise RulesError(f"{source}: expected a mapping with a 'categories' mapping")
        return cls(doc["categories"], source=source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> RuleSet:
        """The rules at ``path``, or the packaged ``rules.yaml`` when ``path`` is None."""
        if path is None:
            ref = resources.files(__package__ or "langchain_nemoguard.simulator").joinpath("rules.yaml")
            return cls.from_yaml(ref.read_text(encoding="utf-8"), source="rules.yaml")
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"cannot read rule file {p}: {exc.strerror}") from None
        return cls.from_yaml(text, source=str(p))

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self._rules)

    def canonical(self, name: str) -> str | None:
        """The rule-table spelling of ``name`` if the table has such a category, ignoring case/punctuation."""
        return self._by_key.get(category_key(name))

    def match(self, text: str, only: Iterable[str] | None = None) -> list[RuleMatch]:
        """Every category whose patterns occur in ``text``, in taxonomy order; ``only`` limits the categories."""
        wanted = None if only is None else {category_key(n) for n in only}
        out: list[RuleMatch] = []
        for name, pattern in self._rules:
            if wanted is not None and category_key(name) not in wanted:
                continue
            m = pattern.search(text)
            if m is not None:
                out.append(RuleMatch(name, m.group(0)))
        return out

    def __repr__(self) -> str:
        return f"RuleSet(source={self.source!r}, categories={len(self._rules)})"
