"""Deterministic verdicts and the exact output text of the model - the simulator's "model", as pure functions.

Nothing here does I/O, so every rule can be unit-tested without a server. Three judging modes mirror the
model's three modes (nemotron-formats 1.3):

* built-in taxonomy: the regex table of ``rules.yaml``;
* Mode A (``custom_policy``): word overlap with the policy's "Disallowed Behaviors" bullets, unless an
  "Allowed Behaviors" bullet overlaps strictly more; the category is the policy's ``Name:``;
* Mode B (``custom_taxonomy``): a category matches when all significant words of its name, or of one of its
  keyword phrases, occur in the text; a category that is a built-in name also uses the built-in rules for it;
  an "Allow-list" bullet that overlaps at least as much exempts the text ("explicitly permitted even if
  adjacent", in NVIDIA's wording).

A custom policy or taxonomy replaces the built-in behaviour entirely, as it does in the real model.

The image rule (the simulator's own convention, there is no way to judge pixels by rule): an image whose
top-left pixel is red (within 24 levels of (255, 0, 0)) is "Violence"; any other decodable image is safe. Remote image URLs are
never fetched (the simulator makes no outbound requests) and count as safe.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from PIL import Image, UnidentifiedImageError

from .rules import BUILTIN_TAXONOMY, RuleSet, category_key

IMAGE_RULE_CATEGORY: Final = "Violence"
IMAGE_MARKER_RGB: Final = (255, 0, 0)
IMAGE_MARKER_TOLERANCE: Final = 24
DEFAULT_MAX_IMAGE_PIXELS: Final = 40_000_000

# Words of four letters or more that carry no topic in policy prose ("Requests for...", "Providing...").
_STOPWORD_TEXT: Final = """
    about above after again against also because been before being below between both could does doing
    down during each even from further have having here into just more most once only other over same
    should some such than that their them then there these they this those through under until very were
    what when where which while will with would your yours yourself user users request requests
    requesting asking asks provide provides providing give gives giving share shares sharing information
    info details content help helping assist assistance discuss discusses discussing explain explaining
    tell telling questions question related regarding general specific including include includes
    anything something someone people things thing make makes making want wants like behavior behaviors
    behaviours custom allowed disallowed
"""
STOPWORDS: Final = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"[^\W_]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(?P<item>.+?)\s*$")
_SCODE = re.compile(r"^\s*S\d+\s*[:.]\s*(?P<item>.+?)\s*$", re.IGNORECASE)
_NAME_LINE = re.compile(r"^\s*Name\s*:\s*(?P<name>.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_ENTRY = re.compile(r"(?P<name>[^(:]+?)\s*(?:\((?P<paren>[^)]*)\))?\s*(?:[:.]\s*(?P<desc>.*))?$")
_PHRASE_SPLIT = re.compile(r"[;,]|\s+(?:or|and)\s+|…|\.\.\.", re.IGNORECASE)


class ImageRuleError(ValueError):
    """The image data could not be judged: not decodable, or larger than the pixel limit."""


@dataclass(frozen=True, slots=True)
class SimulatedVerdict:
    """What the simulated model concluded; ``response_safe`` is None when no assistant turn was sent."""

    user_safe: bool
    response_safe: bool | None
    categories: tuple[str, ...]
    reasoning: str

    @property
    def safe(self) -> bool:
        return self.user_safe and self.response_safe is not False


@dataclass(frozen=True, slots=True)
class _Hit:
    category: str
    evidence: str


_Judgement = tuple[list[_Hit], str | None]
"""Hits in taxonomy order, and for a safe text an optional note on why (an allowed item won)."""


# --- word overlap (Mode A and B) ---------------------------------------------------------------------------


def _stem(word: str) -> str:
    """A crude, documented stemmer so that "leaked" meets "leak" and "pricing" meets "price"."""
    w = word.casefold()
    for suffix in ("ing", "ed", "es", "s", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            return w[: -len(suffix)]
    return w


def significant_words(text: str) -> tuple[str, ...]:
    """Words of four or more characters that are not stopwords (CJK runs count whatever their length)."""
    out: list[str] = []
    for w in _WORD.findall(text):
        if _CJK.search(w):
            out.append(w)
        elif len(w) >= 4 and w.casefold() not in STOPWORDS:
            out.append(w.casefold())
    return tuple(dict.fromkeys(out))


class _TextIndex:
    """The stems of one text, built once and asked about many policy words."""

    __slots__ = ("_folded", "_stems")

    def __init__(self, text: str) -> None:
        self._folded = text.casefold()
        self._stems = {_stem(w) for w in _WORD.findall(text)}

    def has(self, word: str) -> bool:
        if _CJK.search(word):
            return word in self._folded
        return _stem(word) in self._stems

    def overlap(self, words: Sequence[str]) -> list[str]:
        return [w for w in words if self.has(w)]


@dataclass(frozen=True, slots=True)
class _Item:
    """A bullet or keyword phrase with its significant words precomputed."""

    text: str
    words: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> _Item:
        return cls(text.strip(), significant_words(text))


def _best(items: Sequence[_Item], index: _TextIndex) -> tuple[int, _Item | None, list[str]]:
    best: tuple[int, _Item | None, list[str]] = (0, None, [])
    for item in items:
        hit = index.overlap(item.words)
        if len(hit) > best[0]:
            best = (len(hit), item, hit)
    return best


# --- Mode A: custom policy ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomPolicy:
    """The parts of a model-card-format policy (nemotron-formats 1.7) that decide a verdict."""

    name: str
    disallowed: tuple[_Item, ...]
    allowed: tuple[_Item, ...]

    @classmethod
    def parse(cls, text: str) -> CustomPolicy:
        name_match = _NAME_LINE.search(text)
        name = name_match.group("name") if name_match else "Custom Policy"
        sections: dict[str, list[_Item]] = {"disallowed": [], "allowed": []}
        current: str | None = None
        for line in text.splitlines():
            stripped = line.strip()
            folded = stripped.casefold()
            if not stripped:
                continue
            if folded.startswith(("disallowed behavio", "disallowed:", "prohibited")):
                current = "disallowed"
            elif folded.startswith(("allowed behavio", "allowed:", "allow-list", "allow list", "permitted")):
                current = "allowed"
            elif stripped.startswith("#") or (stripped.endswith(":") and not _BULLET.match(line)):
                current = None
            elif current is not None:
                bullet = _BULLET.match(line)
                sections[current].append(_Item.of(bullet.group("item") if bullet else stripped))
        return cls(name, tuple(sections["disallowed"]), tuple(sections["allowed"]))

    def judge(self, text: str) -> _Judgement:
        index = _TextIndex(text)
        d_score, d_item, d_words = _best(self.disallowed, index)
        if d_score == 0 or d_item is None:
            return [], None
        a_score, a_item, _ = _best(self.allowed, index)
        if a_score > d_score and a_item is not None:
            return [], f'allowed behavior "{a_item.text}" outweighs disallowed behavior "{d_item.text}"'
        return [_Hit(self.name, f'disallowed behavior "{d_item.text}" ({", ".join(d_words)})')], None


# --- Mode B: custom taxonomy -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaxonomyEntry:
    """One category line: its name, keyword phrases, and the built-in rule category it stands for, if any."""

    name: str
    phrases: tuple[_Item, ...]
    builtin: str | None


@dataclass(frozen=True, slots=True)
class CustomTaxonomy:
    """Category lines (``- Name (kw, kw)`` or ``S1: Name.``) plus an optional allow-list (CB cookbook shape)."""

    entries: tuple[TaxonomyEntry, ...]
    allowed: tuple[_Item, ...]

    @classmethod
    def parse(cls, text: str, rules: RuleSet) -> CustomTaxonomy:
        builtin_names = {category_key(n): n for n in (*BUILTIN_TAXONOMY, *rules.categories)}
        entries: list[TaxonomyEntry] = []
        allowed: list[_Item] = []
        in_allow = False
        candidates: list[str] = []
        bare: list[str] = []
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            folded = stripped.casefold()
            if folded.startswith(("allow-list", "allow list", "allowlist", "allowed")):
                in_allow = True
                continue
            marked = _BULLET.match(line) or _SCODE.match(line)
            if in_allow:
                allowed.append(_Item.of(marked.group("item") if marked else stripped))
            elif marked:
                candidates.append(marked.group("item"))
            elif not stripped.endswith(":"):
                bare.append(stripped)
        # A taxonomy written without bullets or S-codes: every non-heading line is a category.
        for body in candidates or bare:
            entry = cls._entry(body, builtin_names, rules)
            if entry is not None:
                entries.append(entry)
        return cls(tuple(entries), tuple(allowed))

    @staticmethod
    def _entry(body: str, builtin_names: dict[str, str], rules: RuleSet) -> TaxonomyEntry | None:
        m = _ENTRY.match(body.strip())
        if m is None:
            return None
        name = m.group("name").strip().rstrip(".").strip()
        paren = m.group("paren") or ""
        desc = m.group("desc") or ""
        # "Sexual (minor)" is a built-in name whose parentheses are part of the name, not keywords.
        with_paren = f"{name} ({paren})"
        if paren and category_key(with_paren) in builtin_names:
            name, paren = builtin_names[category_key(with_paren)], ""
        elif category_key(name) in builtin_names:
            name = builtin_names[category_key(name)]
        phrases = [_Item.of(name)]
        for chunk in (paren, desc):
            for phrase in _PHRASE_SPLIT.split(chunk):
                if phrase.strip().casefold() not in ("", "custom") and significant_words(phrase):
                    phrases.append(_Item.of(phrase))
        return TaxonomyEntry(name, tuple(phrases), rules.canonical(name))

    def judge(self, text: str, rules: RuleSet) -> _Judgement:
        index = _TextIndex(text)
        allow_score, allow_item, _ = _best(self.allowed, index)
        hits: list[_Hit] = []
        exempted: list[str] = []
        for entry in self.entries:
            score, evidence = 0, ""
            if entry.builtin is not None:
                for m in rules.match(text, only=(entry.builtin,)):
                    score, evidence = max(1, len(significant_words(m.excerpt))), f'rule match "{m.excerpt}"'
            for phrase in entry.phrases:
                if (
                    phrase.words
                    and len(phrase.words) > score
                    and len(index.overlap(phrase.words)) == len(phrase.words)
                ):
                    score, evidence = len(phrase.words), f'"{phrase.text}"'
            if score and allow_score < score:
                hits.append(_Hit(entry.name, evidence))
            elif score:
                exempted.append(entry.name)
        if exempted and allow_item is not None:
            return hits, f'allow-list item "{allow_item.text}" exempts {", ".join(exempted)}'
        return hits, None

    def has(self, category: str) -> bool:
        return any(category_key(e.name) == category_key(category) for e in self.entries)


# --- image rule --------------------------------------------------------------------------------------------


def image_is_flagged(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> bool:
    """True when the decoded image's top-left pixel is red - the simulator's stand-in for a harmful image.

    "Red" allows a small tolerance around (255, 0, 0): clients re-encode images as JPEG before sending them,
    which shifts a pure red pixel by a few levels.

    Decoding is real (Pillow, with a pixel limit checked before any pixel is read) so that clients sending
    broken or oversized images see an error, as they would from vLLM.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise ImageRuleError(
                    f"image has {im.width}x{im.height} pixels, over the {max_pixels}-pixel limit"
                )
            pixel = im.crop((0, 0, 1, 1)).convert("RGB").getpixel((0, 0))
    except ImageRuleError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRuleError(f"image cannot be decoded: {exc}") from None
    if not isinstance(pixel, tuple):  # an RGB image's pixel is always a tuple
        return False
    return all(
        abs(int(c) - m) <= IMAGE_MARKER_TOLERANCE for c, m in zip(pixel, IMAGE_MARKER_RGB, strict=True)
    )


# --- verdict -----------------------------------------------------------------------------------------------


def _describe(hits: Sequence[_Hit]) -> str:
    parts = []
    for h in hits:
        evidence = h.evidence if len(h.evidence) <= 80 else h.evidence[:77] + "..."
        parts.append(f"{h.category} ({evidence})")
    return "; ".join(parts)


def _sentence(turn: str, hits: Sequence[_Hit], note: str | None, where: str) -> str:
    if hits:
        return f"The {turn} matches {_describe(hits)}{where}, so it is unsafe."
    if note:
        return f"In the {turn}, the {note}{where}, so it is safe."
    return f"The {turn} matches nothing{where}, so it is safe."


def _builtin_hits(rules: RuleSet, text: str) -> _Judgement:
    return [_Hit(m.category, f'"{m.excerpt}"') for m in rules.match(text)], None


def compute_verdict(
    user_text: str,
    response_text: str | None = None,
    *,
    image: bytes | None = None,
    custom_policy: str | None = None,
    custom_taxonomy: str | None = None,
    rules: RuleSet | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> SimulatedVerdict:
    """Judge one user turn (with an optional image) and an optional assistant turn, deterministically.

    ``rules`` defaults to the packaged table (loaded on each call - pass a ``RuleSet`` when calling often).
    Raises ``ValueError`` when both custom kwargs are given (the model's Mode A and B are mutually exclusive)
    and ``ImageRuleError`` for an image that does not decode.
    """
    if custom_policy is not None and custom_taxonomy is not None:
        raise ValueError("custom_policy and custom_taxonomy are mutually exclusive")
    rules = rules if rules is not None else RuleSet.load()

    judge: Callable[[str], _Judgement]
    order: tuple[str, ...]
    image_applies: bool
    if custom_policy is not None:
        policy = CustomPolicy.parse(custom_policy)
        judge, order, image_applies = policy.judge, (policy.name,), False
        scope = f'policy "{policy.name}"'
    elif custom_taxonomy is not None:
        taxonomy = CustomTaxonomy.parse(custom_taxonomy, rules)
        judge = functools.partial(taxonomy.judge, rules=rules)
        order = tuple(e.name for e in taxonomy.entries)
        image_applies = taxonomy.has(IMAGE_RULE_CATEGORY)
        scope = "custom taxonomy"
    else:
        judge = functools.partial(_builtin_hits, rules)
        order, image_applies = rules.categories, True
        scope = "built-in rule table"

    user_hits, user_note = judge(user_text)
    # Decode the image whatever the mode, so a broken image is an error in every mode.
    flagged = image is not None and image_is_flagged(image, max_pixels=max_image_pixels)
    if flagged and image_applies and all(h.category != IMAGE_RULE_CATEGORY for h in user_hits):
        user_hits.append(_Hit(IMAGE_RULE_CATEGORY, "image with a red top-left pixel"))
    response_hits, response_note = judge(response_text) if response_text is not None else ([], None)

    # Hits carry the exact names in ``order``; the union keeps that (taxonomy) order.
    names = dict.fromkeys(h.category for h in (*user_hits, *response_hits))
    categories = tuple(sorted(names, key=lambda n: order.index(n) if n in order else len(order)))

    sentences = [_sentence("user input", user_hits, user_note, f" in the {scope}")]
    if response_text is not None:
        sentences.append(_sentence("assistant response", response_hits, response_note, ""))
    return SimulatedVerdict(
        user_safe=not user_hits,
        response_safe=None if response_text is None else not response_hits,
        categories=categories,
        reasoning=" ".join(sentences),
    )


def render_verdict_lines(
    *, user_safe: bool, response_safe: bool | None, categories: Sequence[str], with_categories: bool
) -> str:
    """The verdict lines exactly as nemotron-formats 1.5 shows them, joined by newlines, no trailing newline."""
    lines = [f"User Safety: {'safe' if user_safe else 'unsafe'}"]
    if response_safe is not None:
        lines.append(f"Response Safety: {'safe' if response_safe else 'unsafe'}")
    unsafe = not user_safe or response_safe is False
    if with_categories and unsafe and categories:
        lines.append(f"Safety Categories: {', '.join(categories)}")
    return "\n".join(lines)


def render_output(verdict: SimulatedVerdict, *, think: bool, with_categories: bool) -> str:
    """The whole model output: in THINK mode the trace, then ``</think>`` directly followed by the verdict."""
    lines = render_verdict_lines(
        user_safe=verdict.user_safe,
        response_safe=verdict.response_safe,
        categories=verdict.categories,
        with_categories=with_categories,
    )
    if think:
        return f"<think>\n{verdict.reasoning}\n</think>{lines}"
    return lines
