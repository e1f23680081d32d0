"""Verdicts, actions and outcomes: what the guard concluded, and the one rule for what happens next.

Every adapter (LangChain runnable and middleware, LiteLLM, the stream loops) turns a verdict into one of three
outcomes with :attr:`Verdict.outcome`; none of them writes the rule again:

* ``pass``: the text goes on - it is safe, the guard failed open (``on_error="allow"``), or the policy's action
  for its categories is ``log``;
* ``refuse``: replace the text with the policy's refusal and go on (``rewrite``);
* ``block``: stop - raise, answer 400, end the stream (``block``, and every failed check under
  ``on_error="block"``: a refusal would read like a policy decision, an outage must not).

:meth:`Verdict.at_stage` narrows a verdict to the part a stage is about (an output check also rates its
prompt, which had its own input check).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, get_args

from .errors import ConfigurationError, ContentBlockedError, ErrorCode, GuardUnavailableError, Stage

if TYPE_CHECKING:
    from .policy import Policy


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


class Outcome(StrEnum):
    """What an adapter does with a checked text (see the module docstring): pass, refuse or block."""

    PASS = "pass"
    REFUSE = "refuse"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one ``check`` (built by the guard; adapters and tests may build one too).

    Args:
        user_safe: The model's rating of the user turn (None: not judged, e.g. the guard failed).
        response_safe: The rating of the response (None: no response was sent, or the guard failed).
        categories: The categories the model named for an unsafe verdict (suppressed ones removed).
        reasoning: THINK mode's reasoning trace.
        error: Why there is no verdict (None: there is one).
        error_message: A human description of ``error`` for operators: never a key, but it may name the guard
            endpoint (what failed where); what callers and end users see is :func:`.errors.describe_outage`.
        safe: The overall answer the caller should act on; when the guard failed it follows ``on_error``.
        action: What the policy says to do (``outcome`` turns it into pass / refuse / block).
        policy: The name of the policy it was judged under.
        model: The model id.
        mode: The output mode.
        latency_ms: Time the check took.
        calls: Model calls the check made (windows, images, policy variants).
        cached: True for a cache hit.
        suppressed_categories: Categories the policy ignores that the model named.
        raw_output: The model's raw answers (kept out of the repr and of ``to_dict``).
        score: The probability that the judged field is unsafe, read from the answer's token log-probabilities
            at the verdict token (:mod:`.formats.scores`): the largest of ``user_score`` and ``response_score``.
            None when unknown (the endpoint returned no logprobs, a call failed, THINK mode, or a call's
            unsafe reading was suppressed by the policy); a missing score never changes the verdict.
        simulator: True when an answer came from the interface simulator, a test double and not a safety
            model (noticed from its response header, however the endpoint was configured). A verdict is marked
            when any of its calls was answered by the simulator; a call that failed left no answer to read.
        truncated: An unsafe answer that was cut (length or size limit) stands; its categories may be incomplete,
            so its action is the strictest the policy can give.
        think_ignored: A THINK check came back without a reasoning trace (hosted endpoints may ignore
            ``enable_thinking``); the verdict itself still holds.
        user_score: The largest probability over the check's calls that the user turn is unsafe (None:
            unknown for at least one call that rated it).
        response_score: The same for the response; at the ``output`` and ``tool_call`` stages it is ``score``.
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
    score: float | None = None
    simulator: bool = False
    user_score: float | None = None
    response_score: float | None = None

    @property
    def allowed(self) -> bool:
        """True when the text may go on (safe, failed open, or unsafe under a ``log`` action)."""
        return self.action.passes

    @property
    def unavailable(self) -> bool:
        """True when the guard produced no verdict (``error`` says why)."""
        return self.error is not None

    @property
    def outcome(self) -> Outcome:
        """The one pass / refuse / block decision every adapter acts on."""
        return decide(self)

    def at_stage(self, stage: Stage | str) -> Verdict:
        """This verdict narrowed to the part ``stage`` is about (see :func:`for_stage`)."""
        return for_stage(self, stage)

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
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
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
            "simulator": self.simulator,
            "truncated": self.truncated,
            "think_ignored": self.think_ignored,
            "score": self.score,
        }


def decide(verdict: Verdict) -> Outcome:
    """Pass when the action lets the text go on; refuse for a ``rewrite`` of a real verdict; else block.

    A failed check never refuses: under ``on_error="block"`` it blocks (and says "guard unavailable"), so an
    outage cannot pass for a policy decision.
    """
    if verdict.action.passes:
        return Outcome.PASS
    if verdict.action is Action.REWRITE and verdict.error is None:
        return Outcome.REFUSE
    return Outcome.BLOCK


# --- exit behaviour: what an enforced verdict does in a framework (LangChain's moderation convention) ---------

ExitBehavior = Literal["end", "error", "replace"]
"""LangChain's ``OpenAIModerationMiddleware`` convention: ``error`` raises, ``end`` answers with the refusal and
stops, ``replace`` puts the refusal in place of the offending content and goes on."""

DEFAULT_OUTAGE_MESSAGE = "The assistant is temporarily unavailable. Please try again in a moment."
"""What an end user reads when no verdict could be had and the run answers instead of raising: it is not the
policy's refusal (nothing was judged unsafe) and it names no endpoint, host or key."""


class Exit(StrEnum):
    """What an adapter does with one checked text: the three exit behaviours, or let it pass."""

    PASS = "pass"
    ERROR = "error"
    END = "end"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class Settlement:
    """The decision for one verdict: how to exit, and the text an answer carries (refusal or outage message)."""

    exit: Exit
    verdict: Verdict
    text: str = ""

    @property
    def outage(self) -> bool:
        """True when the guard gave no verdict (the text is then the outage message, never the refusal)."""
        return self.verdict.error is not None


def exit_behavior_of(value: object) -> ExitBehavior | None:
    """``value`` checked as an ``exit_behavior`` (None or one of ``end``, ``error``, ``replace``).

    Raises:
        ConfigurationError: Anything else (a misspelt behaviour must not quietly fall back to a default).
    """
    if value is None:
        return None
    choices = get_args(ExitBehavior)
    if value not in choices:
        raise ConfigurationError(f"exit_behavior must be one of {', '.join(map(repr, choices))} or None, got {value!r}")
    return value  # type: ignore[return-value]


def answer_for(verdict: Verdict, policy: Policy, outage_message: str | None = None) -> str:
    """The text an answer carries instead of the judged one: the policy's refusal for a verdict, the outage
    message (default :data:`DEFAULT_OUTAGE_MESSAGE`) when there was none."""
    if verdict.error is not None:
        return outage_message or DEFAULT_OUTAGE_MESSAGE
    return policy.refusal


def settle(
    verdict: Verdict,
    policy: Policy,
    *,
    exit_behavior: ExitBehavior | None = None,
    block: ExitBehavior = "error",
    outage_message: str | None = None,
) -> Settlement:
    """The one rule from a verdict to an exit, shared by every adapter that speaks LangChain's convention.

    * A verdict whose outcome is ``pass`` (safe, failed open, or a ``log`` action) passes, whatever
      ``exit_behavior`` says: an exit behaviour changes what an *enforced* verdict does, it never turns a
      ``log`` into a block.
    * ``exit_behavior`` given: every enforced verdict (``block`` or ``rewrite``, and an outage under
      ``on_error="block"``) exits that way.
    * ``exit_behavior=None`` keeps the policy's per-category map: ``rewrite`` replaces, ``block`` exits as
      ``block`` says (the adapter's own default: the wrapper raises, the middleware ends the run). An outage
      takes the action the policy gives an unnamed category (``"*"``): a ``rewrite`` policy replaces (with the
      outage message), any other exits as ``block``.

    The text of an answer is the policy's refusal for a real verdict and ``outage_message`` (default
    :data:`DEFAULT_OUTAGE_MESSAGE`) for an outage, so an outage never reads like a policy decision.
    """
    outcome = verdict.outcome
    if outcome is Outcome.PASS:
        return Settlement(Exit.PASS, verdict)
    outage = verdict.error is not None
    text = answer_for(verdict, policy, outage_message)
    if exit_behavior is not None:
        how = Exit(exit_behavior)
    elif outage:
        how = Exit.REPLACE if policy.action_for(()) is Action.REWRITE else Exit(block)
    else:
        how = Exit.REPLACE if outcome is Outcome.REFUSE else Exit(block)
    return Settlement(how, verdict, text)


def for_stage(verdict: Verdict, stage: Stage | str) -> Verdict:
    """Narrow a verdict to the part a stage is about.

    An output check sends the prompt as context, so the model also rates the prompt; at the output stage only
    the response rating decides (the prompt had its own check at the input stage), and ``score`` becomes the
    response's score.
    """
    stage = Stage(stage)
    narrowed = stage in (Stage.OUTPUT, Stage.TOOL_CALL) and verdict.response_safe is not None
    if narrowed and verdict.score != verdict.response_score:
        verdict = verdict.replace(score=verdict.response_score)
    if verdict.error is not None or verdict.safe:
        return verdict
    if stage in (Stage.OUTPUT, Stage.TOOL_CALL) and verdict.response_safe is True:
        return verdict.replace(safe=True, action=Action.ALLOW)
    return verdict
