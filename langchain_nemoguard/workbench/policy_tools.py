"""Writing and checking policy files (``nemoguard policy new`` / ``validate``).

A policy file is what :meth:`Policy.load` and :class:`PolicySet` read: YAML or JSON,
``{"default": name, "policies": {name: {description, disallowed, allowed, taxonomy, ignore_categories, actions,
include_builtin, refusal}}}``.

:func:`validate_file` reports, per policy, as :class:`Finding` (``error``, ``warning`` or ``info``):

* schema: the file parses and each policy builds (every invalid policy is reported, not only the first);
* unknown categories: ``actions`` keys and ``ignore_categories`` that are not in the policy's taxonomy (the
  built-in Aegis names, the custom taxonomy's names, or the custom policy's own name) - such an entry never
  applies, silently;
* contradictions: an allowed item that repeats a disallowed one (error), or overlaps it so much that the boundary
  is unclear (warning); an allowed item that names a custom category; an action for an ignored category;
* length: the policy's text as the model receives it (the model format's own phrasing), estimated with the
  core's token estimate, plus the template's fixed text and the answer budget of the mode, against the served
  context (the CLI's default: what ``nemoguard serve`` serves). What is left is the room for the judged text of
  one call.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from ..core.formats.nemotron35 import DEFAULT_MAX_TOKENS, Nemotron35Format
from ..core.modes import Mode
from ..core.policy import Policy
from ..core.windows import WindowOptions, estimate_tokens

# The chat template's own text around a policy, in estimated tokens: instructions, output format and, for the
# built-in taxonomy, its 23 categories; a custom policy replaces the instructions and the taxonomy, a custom
# taxonomy only the taxonomy. These err above what the guard itself counts per call (core/budget.py, with
# MIN_TEXT_TOKENS below its own floor), so a policy this check passes is never refused by the guard for size.
TEMPLATE_TOKENS: Mapping[str, int] = MappingProxyType(
    {"builtin": 700, "custom_taxonomy": 350, "custom_policy": 200}
)
MIN_TEXT_TOKENS = 256  # less room than this for the judged text is an error, not a warning
OVERLAP_WARN = 0.6  # share of an allowed item's significant words that also make up a disallowed item
_WORD = re.compile(r"[^\W\d_]+")  # words for the overlap measure
_TOKEN = re.compile(r"[^\W_]+")  # words and numbers for "the same item"
_STOP_TEXT = """a an and any are as at be by can do for from how in into is it its not no of on or that the their them
    this to with without about all may must never only other such than these those when where which who whom
    whose will would should could content request requests user users provide providing"""
_STOP = frozenset(_STOP_TEXT.split())
_FIELDS = (
    "name",
    "description",
    "disallowed",
    "allowed",
    "taxonomy",
    "ignore_categories",
    "actions",
    "include_builtin",
    "refusal",
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing :func:`validate_file` found.

    Args:
        level: ``error`` (the policy is wrong or will not fit), ``warning`` (probably not what you meant) or
            ``info`` (numbers).
        policy: The policy's name (None: the file as a whole).
        message: What, and what to do about it.
    """

    level: str
    policy: str | None
    message: str

    def __str__(self) -> str:
        where = f"policy {self.policy!r}: " if self.policy else ""
        return f"{self.level}: {where}{self.message}"


def _words(text: str) -> set[str]:
    out = set()
    for w in _WORD.findall(text.casefold()):
        if w in _STOP or len(w) < 3:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 4:
                w = w[: -len(suffix)]
                break
        out.add(w)
    return out


def _norm(text: str) -> str:
    return " ".join(_TOKEN.findall(text.casefold()))


# --- reading -------------------------------------------------------------------------------------------------------


def read_policy_data(path: Path) -> tuple[Any, list[Finding]]:
    """The parsed file, or None with the error (YAML errors name the line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        return None, [Finding("error", None, f"cannot read {path}: {why}")]
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text), []
        return yaml.safe_load(text), []
    except json.JSONDecodeError as exc:
        return None, [Finding("error", None, f"{path}:{exc.lineno}: not valid JSON: {exc.msg}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Finding("error", None, f"{where}: not valid YAML: {problem}")]


def _bodies(data: Any) -> tuple[dict[str, Any], str | None, list[Finding]]:
    if not isinstance(data, Mapping):
        return {}, None, [Finding("error", None, "expected a mapping with a 'policies' key")]
    findings = []
    raw = data.get("policies", data if "default" not in data else None)
    if not isinstance(raw, Mapping) or not raw:
        return {}, None, [Finding("error", None, "'policies' must map names to policy settings")]
    extra = [k for k in data if k not in ("policies", "default")] if "policies" in data else []
    if extra:
        findings.append(Finding("warning", None, f"unknown top-level keys {extra} are ignored"))
    default = data.get("default")
    if default is not None and default not in raw:
        findings.append(
            Finding(
                "error", None, f"default {default!r} is not one of the policies ({', '.join(map(str, raw))})"
            )
        )
    return {str(k): v for k, v in raw.items()}, default, findings


def build_policies(bodies: Mapping[str, Any]) -> tuple[dict[str, Policy], list[Finding]]:
    """Each body as a :class:`Policy`; every invalid one is a finding (with pydantic's field and reason)."""
    out: dict[str, Policy] = {}
    findings: list[Finding] = []
    for name, body in bodies.items():
        if body is not None and not isinstance(body, Mapping):
            findings.append(Finding("error", name, f"settings must be a mapping, got {type(body).__name__}"))
            continue
        settings = dict(body or {})
        settings.setdefault("name", name)
        unknown = [k for k in settings if k not in _FIELDS]
        if unknown:
            close = {k: difflib.get_close_matches(k, _FIELDS, n=1) for k in unknown}
            hint = "; ".join(f"{k!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for k, c in close.items())
            findings.append(Finding("error", name, f"unknown field {hint}"))
            continue
        try:
            out[name] = Policy(**settings)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"]) or "policy"
                findings.append(Finding("error", name, f"{loc}: {err['msg']}"))
    return out, findings


# --- checks ---------------------------------------------------------------------------------------------------------


def check_categories(policy: Policy) -> list[Finding]:
    """Action keys and ignored categories that the policy's taxonomy does not have."""
    view = policy.taxonomy_view()
    findings = []
    entries = [("actions", k) for k in policy.actions if k != "*"] + [
        ("ignore_categories", c) for c in policy.ignore_categories
    ]
    for where, name in entries:
        if view.normalise(name) in view:
            continue
        close = difflib.get_close_matches(name, view.names, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if policy.kind == "custom_policy":
            findings.append(
                Finding(
                    "warning",
                    policy.name,
                    f"{where} names {name!r}, but a custom policy's verdicts carry the policy's name "
                    f"({policy.name!r}) as their category: this entry may never apply",
                )
            )
        else:
            known = "the built-in taxonomy" if policy.kind == "builtin" else "this policy's taxonomy"
            findings.append(
                Finding("error", policy.name, f"{where}: unknown category {name!r}, not in {known}{hint}")
            )
    ignored = {view.normalise(c).casefold() for c in policy.ignore_categories}
    for k, action in policy.actions.items():
        if k != "*" and view.normalise(k).casefold() in ignored:
            findings.append(
                Finding(
                    "warning", policy.name, f"actions[{k!r}] = {action.value} never applies: {k!r} is ignored"
                )
            )
    return findings


def check_contradictions(policy: Policy) -> list[Finding]:
    """Allowed items that repeat, or overlap heavily with, a disallowed item or a custom category."""
    findings = []
    disallowed = list(policy.disallowed) + list(policy.taxonomy or ())
    for allowed in policy.allowed:
        a_norm, a_words = _norm(allowed), _words(allowed)
        for dis in disallowed:
            if a_norm and a_norm == _norm(dis):
                findings.append(
                    Finding(
                        "error",
                        policy.name,
                        f"allowed item {allowed!r} is also disallowed: the model gets both",
                    )
                )
                break
            d_words = _words(dis)
            if a_words and d_words:
                overlap = len(a_words & d_words) / min(len(a_words), len(d_words))
                if overlap >= OVERLAP_WARN:
                    shared = ", ".join(sorted(a_words & d_words))
                    findings.append(
                        Finding(
                            "warning",
                            policy.name,
                            f"allowed item {allowed!r} overlaps disallowed {dis!r} ({overlap:.0%} of the words: "
                            f"{shared}): say what separates them, or the model decides",
                        )
                    )
                    break
        if policy.kind == "custom_taxonomy" and allowed.strip().casefold() in {
            n.casefold() for n in policy.taxonomy_view().names
        }:
            findings.append(
                Finding("error", policy.name, f"allowed item {allowed!r} is a category name of this policy")
            )
    for field, items in (("disallowed", policy.disallowed), ("allowed", policy.allowed)):
        seen = set()
        for item in items:
            if _norm(item) in seen:
                findings.append(Finding("warning", policy.name, f"{field} lists {item!r} twice"))
            seen.add(_norm(item))
    return findings


@dataclass(frozen=True, slots=True)
class Fit:
    """How one policy fits the served context in one mode (all token counts are estimates).

    Args:
        policy_tokens: The policy text as the model receives it (the largest variant).
        template_tokens: The chat template's own text.
        answer_tokens: The answer budget of the mode.
        context: The served context.
    """

    policy_tokens: int
    template_tokens: int
    answer_tokens: int
    context: int

    @property
    def room(self) -> int:
        """Tokens left for the judged text of one call."""
        return self.context - self.policy_tokens - self.template_tokens - self.answer_tokens


def fit(policy: Policy, *, mode: Mode, context: int) -> Fit:
    """The token budget of one call under ``policy`` in ``mode``."""
    variants = Nemotron35Format().policy_variants(policy, think=mode == "think")
    policy_tokens = max(estimate_tokens("".join(v.values())) for v in variants)
    return Fit(policy_tokens, TEMPLATE_TOKENS[policy.kind], DEFAULT_MAX_TOKENS[mode], context)


def check_fit(policy: Policy, *, mode: Mode, context: int) -> list[Finding]:
    f = fit(policy, mode=mode, context=context)
    window = WindowOptions().max_tokens
    numbers = (
        f"~{f.policy_tokens} tokens of policy + ~{f.template_tokens} of template + {f.answer_tokens} for a "
        f"{mode} answer in a {f.context}-token context leave ~{f.room} for the judged text"
    )
    if f.room < MIN_TEXT_TOKENS:
        return [
            Finding(
                "error",
                policy.name,
                f"too long: {numbers}; shorten the policy or serve a longer "
                "context (nemoguard serve --max-model-len N)",
            )
        ]
    if f.room < window:
        return [
            Finding(
                "warning",
                policy.name,
                f"{numbers}, less than the guard's default window of {window}: "
                f"use WindowOptions(max_tokens={f.room}) or serve a longer context",
            )
        ]
    return [Finding("info", policy.name, numbers)]


def validate_policies(policies: Mapping[str, Policy], *, mode: Mode, context: int) -> list[Finding]:
    findings: list[Finding] = []
    for policy in policies.values():
        findings += check_categories(policy)
        findings += check_contradictions(policy)
        findings += check_fit(policy, mode=mode, context=context)
    return findings


def validate_file(path: str | Path, *, mode: Mode, context: int) -> list[Finding]:
    """Every finding about a policy file (see the module docstring); ``context`` is the served context."""
    p = Path(path)
    data, findings = read_policy_data(p)
    if data is None and findings:
        return findings
    bodies, _default, more = _bodies(data)
    findings += more
    policies, more = build_policies(bodies)
    findings += more
    return findings + validate_policies(policies, mode=mode, context=context)


# --- scaffolding ----------------------------------------------------------------------------------------------------


def scaffold(
    *,
    name: str,
    audience: str | None = None,
    description: str | None = None,
    disallowed: Sequence[str] = (),
    allowed: Sequence[str] = (),
    actions: Mapping[str, str] | None = None,
    include_builtin: bool = False,
) -> dict[str, Any]:
    """The data of a one-policy file (custom policy, the model card's format) that :class:`PolicySet` reads.

    Raises:
        ValueError: The settings do not make a valid policy (no disallowed behaviour, a bad action...).
    """
    parts = [
        p.strip().rstrip(".") + "." for p in (description, f"Audience: {audience}" if audience else None) if p
    ]
    body: dict[str, Any] = {}
    if parts:
        body["description"] = " ".join(parts)
    body["disallowed"] = [d.strip() for d in disallowed if d.strip()]
    if not body["disallowed"]:
        raise ValueError("a custom policy needs at least one disallowed behaviour")
    if allowed:
        body["allowed"] = [a.strip() for a in allowed if a.strip()]
    if actions:
        body["actions"] = dict(actions)
    if include_builtin:
        body["include_builtin"] = True
    Policy(name=name, **body)  # raises on anything PolicySet would refuse
    return {"default": name, "policies": {name: body}}


def dump_yaml(data: Mapping[str, Any], *, comment: Iterable[str] = ()) -> str:
    head = "".join(f"# {line}\n" for line in comment)
    return head + yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=100)


__all__ = [
    "TEMPLATE_TOKENS",
    "Finding",
    "Fit",
    "build_policies",
    "check_categories",
    "check_contradictions",
    "check_fit",
    "dump_yaml",
    "fit",
    "read_policy_data",
    "scaffold",
    "validate_file",
    "validate_policies",
]
