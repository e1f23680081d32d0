"""Verdicts and actions: what the guard concluded and what should happen because of it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import ContentBlockedError, ErrorCode, GuardUnavailableError, Stage


class Action(StrEnum):
    """What a caller should do with a checked text.

    ``allow``: safe (or failed open). ``block``: refuse / raise. ``rewrite``: replace the unsafe text with a
    refusal and go on. ``log``: unsafe, but let it pass and record it.
    """

    ALLOW = "allow"
    BLOCK = "block"
    REWRITE = "rewrite"
    LOG = "log"

    @property
    def passes(self) -> bool:
        return self in (Action.ALLOW, Action.LOG)


# When categories map to different actions the strictest wins.
ACTION_SEVERITY = {Action.ALLOW: 0, Action.LOG: 1, Action.REWRITE: 2, Action.BLOCK: 3}


def strictest(actions: Iterable[Action | str]) -> Action:
    """The most severe of ``actions`` (``block`` over ``rewrite`` over ``log`` over ``allow``)."""
    return max((Action(a) for a in actions), key=ACTION_SEVERITY.__getitem__, default=Action.BLOCK)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one ``check``.

    ``user_safe`` / ``response_safe``: the model's ratings (``None`` when that part was not judged, e.g. no
    response was sent, or the guard failed). ``safe``: the overall answer the caller should act on; when the
    guard failed (``error`` set) it follows ``on_error``. ``action``: what the policy says to do.
    ``truncated``: an unsafe answer that was cut (length or size limit) stands; its categories may be incomplete,
    so its action is the strictest the policy can give. ``think_ignored``: a THINK check came back without a
    reasoning trace (hosted endpoints may ignore ``enable_thinking``); the verdict itself still holds.
    """

    user_safe: bool | None
    response_safe: bool | None = None
    categories: tuple[str, ...] = ()
    reasoning: str | None = None
    error: ErrorCode | None = None
    error_message: str | None = None
    safe: bool = True
    action: Action = Action.ALLOW
    policy: str | None = None
    model: str | None = None
    mode: str | None = None
    latency_ms: float = 0.0
    calls: int = 1
    cached: bool = False
    suppressed_categories: tuple[str, ...] = ()
    truncated: bool = False
    think_ignored: bool = False
    raw_output: str | None = field(default=None, repr=False)

    @property
    def allowed(self) -> bool:
        """True when the text may go on (safe, failed open, or unsafe under a ``log`` action)."""
        return self.action.passes

    @property
    def unavailable(self) -> bool:
        return self.error is not None

    @property
    def reason(self) -> str:
        """A short human sentence; an outage never reads like a policy decision."""
        if self.error is not None:
            how = "blocked" if not self.safe else "allowed (fail-open)"
            return f"guard unavailable ({self.error.value}): {how}"
        if self.safe:
            return "safe"
        parts = []
        if self.user_safe is False:
            parts.append("user input unsafe")
        if self.response_safe is False:
            parts.append("response unsafe")
        cats = f": {', '.join(self.categories)}" if self.categories else ""
        return f"{' and '.join(parts) or 'unsafe'}{cats}"

    def raise_for_error(self) -> Verdict:
        """Raise :class:`GuardUnavailableError` if the guard failed; return self otherwise."""
        if self.error is not None:
            raise GuardUnavailableError(self.error, self.error_message or "no verdict")
        return self

    def raise_for_block(self, stage: Stage | str = Stage.INPUT) -> Verdict:
        """Raise :class:`ContentBlockedError` unless the verdict lets the text go on."""
        if not self.allowed:
            raise ContentBlockedError(self, stage)
        return self

    def replace(self, **changes: Any) -> Verdict:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for logs, audit records and framework metadata (no raw output by default)."""
        return {
            "safe": self.safe,
            "user_safe": self.user_safe,
            "response_safe": self.response_safe,
            "categories": list(self.categories),
            "action": self.action.value,
            "reasoning": self.reasoning,
            "error": self.error.value if self.error else None,
            "error_message": self.error_message,
            "policy": self.policy,
            "model": self.model,
            "mode": self.mode,
            "latency_ms": round(self.latency_ms, 3),
            "calls": self.calls,
            "cached": self.cached,
            "suppressed_categories": list(self.suppressed_categories),
            "truncated": self.truncated,
            "think_ignored": self.think_ignored,
        }
