"""What every endpoint says about a verdict beyond its own API's fields (the ``nemotron`` object), and the one
rule for outages: a verdict that failed closed makes the whole request a 503."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..core.audit import verdict_label
from ..core.verdict import Verdict
from .errors import GuardUnavailable


def nemotron_fields(v: Verdict) -> dict[str, Any]:
    """The Nemotron verdict, categories and policy of one judged input."""
    out: dict[str, Any] = {
        "verdict": verdict_label(v),
        "user_safe": v.user_safe,
        "response_safe": v.response_safe,
        "categories": list(v.categories),
        "suppressed_categories": list(v.suppressed_categories),
        "policy": v.policy,
        "action": v.action.value,
        "outcome": v.outcome.value,
        "score": v.score,
        "mode": v.mode,
        "model": v.model,
        "fail_open": v.error is not None and v.safe,
        "error": v.error.value if v.error is not None else None,
        "simulator": v.simulator,
    }
    if v.reasoning:
        out["reasoning"] = v.reasoning
    return out


def raise_for_outage(verdicts: Iterable[Verdict]) -> None:
    """Raise :class:`GuardUnavailable` when any verdict is an outage that fails closed (partial answers would
    let the unjudged part through)."""
    for v in verdicts:
        if v.error is not None and not v.safe:
            raise GuardUnavailable(v.error)


__all__ = ["nemotron_fields", "raise_for_outage"]
