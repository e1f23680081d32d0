"""Step 3 of a check, pure: the parsed answers of a plan's calls become one :class:`Verdict`.

* Any unsafe call makes the verdict unsafe; a known-unsafe answer stands even if another call failed, so
  nothing unsafe passes for an outage (the safety rule "never lose an explicit unsafe").
* An unsafe reading is ``False``; a field a call did not rate (``None``) is not unsafe, and not safe either:
  only a clean answer reads safe (the parser's rules, ``formats/reading.py``).
* Categories merge in order; categories the policy ignores are dropped, and a call whose every reason is
  ignored counts as safe - but only when its answer was clean and whole: a messy or cut answer may have named
  more than was read, so its unsafe reading stands.
* The policy picks the action from the remaining categories; an unsafe answer that was cut (``truncated``)
  takes the strictest action the policy can give, since the cut list may have named a stricter category.
* ``think_ignored``: a THINK call came back without a trace (the endpoint ignored the request); ``simulator``:
  an answer came from the interface simulator. Both mark the verdict and change nothing else.
* Scores (:mod:`.formats.scores`): a field's score is the largest over the calls that rated it, and is known
  only when every such call returned one (a call that failed, or whose unsafe reading the policy suppressed,
  leaves it unknown). ``Policy.threshold`` flags a rating the model called safe whose score reaches it; it
  never clears an unsafe one, and a rating without a score stands as parsed.
* With no unsafe answer, any failed call makes the verdict an error that follows ``on_error``, labelled as an
  outage (``error`` set, ``action`` allow or block), never as a policy decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from .errors import GuardUnavailableError
from .formats.base import CallSpec, ParsedCall
from .plan import Plan
from .verdict import Action, Verdict, strictest

OnError = Literal["block", "allow"]


def combine(
    plan: Plan,
    results: Sequence[ParsedCall | GuardUnavailableError],
    *,
    model: str,
    on_error: OnError,
    latency_ms: float,
) -> Verdict:
    """One verdict from the answers (or failures) of ``plan``'s calls, in the same order as its specs."""
    policy = plan.policy
    user_unsafe = response_unsafe = False
    response_judged = False
    categories: list[str] = []
    suppressed: list[str] = []
    traces: list[str] = []
    raws: list[str] = []
    errors: list[GuardUnavailableError] = []
    truncated = think_ignored = False
    scores = _Scores()
    for spec, res in zip(plan.specs, results, strict=True):
        if isinstance(res, GuardUnavailableError):
            errors.append(res)
            scores.unknown(spec)
            continue
        raws.append(res.raw)
        if res.reasoning:
            traces.append(res.reasoning)
        call_unsafe_user = res.user_safe is False
        call_unsafe_resp = res.response_safe is False
        think_ignored |= res.trace_missing
        if spec.response is not None:
            response_judged = True
        if call_unsafe_user or call_unsafe_resp:
            truncated |= res.truncated
        if (call_unsafe_user or call_unsafe_resp) and res.categories:
            kept, dropped = policy.suppress(res.categories)
            suppressed += dropped
            # every reason the call gave is one the policy ignores - trusted only from a clean, whole answer
            if not kept and res.clean and not res.truncated:
                call_unsafe_user = call_unsafe_resp = False
                scores.unknown(spec)  # the model's P(unsafe) is not a probability of unsafe under this policy
            categories += kept
        scores.add(spec, res)
        if policy.threshold is not None:
            call_unsafe_user |= _over(res.user_safe, res.user_score, policy.threshold)
            call_unsafe_resp |= _over(res.response_safe, res.response_score, policy.threshold)
        user_unsafe |= call_unsafe_user
        response_unsafe |= call_unsafe_resp
    common: dict[str, Any] = {
        "policy": policy.name,
        "model": model,
        "mode": plan.mode,
        "latency_ms": latency_ms,
        "calls": len(plan.specs),
        "reasoning": "\n\n".join(dict.fromkeys(traces)) or None,
        "suppressed_categories": tuple(dict.fromkeys(suppressed)),
        "raw_output": "\n---\n".join(raws) or None,
        "simulator": any(isinstance(r, ParsedCall) and r.simulator for r in results),
        "think_ignored": think_ignored,
        **scores.fields(),
    }
    cats = tuple(dict.fromkeys(categories))
    if user_unsafe or response_unsafe:
        action = policy.action_for(cats)
        if truncated:  # the cut list may have named a stricter category
            action = strictest([action, *policy.actions.values()])
        return Verdict(
            user_safe=not user_unsafe,
            response_safe=(not response_unsafe) if response_judged else None,
            categories=cats,
            safe=False,
            action=action,
            truncated=truncated,
            **common,
        )
    if errors:
        first = errors[0]
        fail_open = on_error == "allow"
        msg = str(first) if len(errors) == 1 else f"{first} (and {len(errors) - 1} more failed calls)"
        return Verdict(
            user_safe=None,
            response_safe=None,
            error=first.code,
            error_message=msg,
            safe=fail_open,
            action=Action.ALLOW if fail_open else Action.BLOCK,
            **common,
        )
    return Verdict(
        user_safe=True,
        response_safe=True if response_judged else None,
        safe=True,
        action=Action.ALLOW,
        **common,
    )


def _over(safe: bool | None, score: float | None, threshold: float) -> bool:
    """A rating the model called safe whose score reaches the policy's threshold."""
    return safe is True and score is not None and score >= threshold


class _Scores:
    """Per field: the largest score over the calls that rated it; unknown once one of them had none."""

    __slots__ = ("_best", "_known", "_rated")

    def __init__(self) -> None:
        self._best: dict[str, float] = {}
        self._rated: set[str] = set()
        self._known = {"user": True, "response": True}

    @staticmethod
    def _fields(spec: CallSpec) -> tuple[str, ...]:
        user = ("user",) if _rates_user(spec) else ()
        return (*user, "response") if spec.response is not None else user

    def unknown(self, spec: CallSpec) -> None:
        for name in self._fields(spec):
            self._rated.add(name)
            self._known[name] = False

    def add(self, spec: CallSpec, res: ParsedCall) -> None:
        for name in self._fields(spec):
            self._rated.add(name)
            score = res.user_score if name == "user" else res.response_score
            if score is None:
                self._known[name] = False
            elif name not in self._best or score > self._best[name]:
                self._best[name] = score

    def _field(self, name: str) -> float | None:
        return self._best.get(name) if self._known[name] else None

    def fields(self) -> dict[str, float | None]:
        user, response = self._field("user"), self._field("response")
        rated = [self._field(name) for name in ("user", "response") if name in self._rated]
        known = [s for s in rated if s is not None]
        score = max(known) if rated and len(known) == len(rated) else None
        return {"score": score, "user_score": user, "response_score": response}


def _rates_user(spec: CallSpec) -> bool:
    # a call whose prompt is only context for another call's verdict does not rate it (see CallSpec)
    return bool(getattr(spec, "judge_prompt", True))


__all__ = ["OnError", "combine"]
