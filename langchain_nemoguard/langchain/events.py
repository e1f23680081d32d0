"""What LangChain sees of a check: tags, custom events, run metadata, the configurable policy, the errors.

Shared by ``GuardedRunnable`` and ``NemoGuardMiddleware``, so that neither imports the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.exceptions import ModelError
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.tracers._streaming import _StreamingCallbackHandler, _V2StreamingCallbackHandler
from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer

from ..core.errors import ContentBlockedError, ErrorCode, GuardUnavailableError, Stage, describe_outage
from ..core.guard import NemoGuard
from ..core.policy import Policy
from ..core.verdict import Action, Exit, Settlement, Verdict

POLICY_CONFIG_KEY = "nemoguard_policy"
"""``configurable`` key that picks a named policy for one call."""

VERDICT_EVENT = "nemoguard_verdict"
"""Name of the custom event dispatched for every verdict."""

UNCHECKED_TAG = "nemoguard:unchecked"
"""Tag on the inner runnable's runs: its raw stream events carry text that has not been judged yet."""

NOSTREAM_TAG = "nostream"  # langgraph.constants.TAG_NOSTREAM, spelled out to keep langgraph optional here


class ModelContentBlockedError(ContentBlockedError, ModelError):
    """How a block is raised inside LangChain: the one :class:`ContentBlockedError`, also a ``ModelError``.

    Catch ``langchain_nemoguard.ContentBlockedError``; this subclass exists only because the core cannot import
    LangChain, while ``ModelRetryMiddleware`` retries every exception that is not a ``ModelError``. With
    ``is_retryable=False`` its default policy does not retry a block; ``with_fallbacks`` and
    ``ModelFallbackMiddleware`` do catch it unless told otherwise (see docs/langchain.md).
    """

    is_retryable = False


class ModelGuardUnavailableError(GuardUnavailableError, ModelError):
    """How an outage is raised inside LangChain: a :class:`GuardUnavailableError` (and a ``ModelError``), never a
    :class:`ContentBlockedError`.

    Raised when the guard gave no verdict under ``on_error="block"`` and the exit is ``error`` (the wrapper's
    default, ``exit_behavior="error"``, or the middleware's ``raise_on_block``). Nothing unjudged was let
    through. Being distinct from a policy block, it lets a caller fall back only when the guard is down:
    ``guarded.with_fallbacks([other], exceptions_to_handle=(GuardUnavailableError,))``. Its message names the
    kind of failure only (never the endpoint, host or key); ``is_retryable`` is true, so ``ModelRetryMiddleware``
    and ``with_retry`` may retry it.

    Args:
        verdict: The failed check's verdict (its ``error_message`` replaced by the public description).
        stage: Where the check ran.
    """

    is_retryable = True

    def __init__(self, verdict: Verdict, stage: Stage | str = Stage.INPUT) -> None:
        self.stage = Stage(stage)
        self.verdict = public_verdict(verdict)
        code = verdict.error or ErrorCode.INTERNAL
        super().__init__(code, f"{self.stage.value} not checked, nothing let through: {describe_outage(code)}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "guard_unavailable", "stage": self.stage.value, "code": self.code.value, "message": str(self)}


def public_verdict(verdict: Verdict) -> Verdict:
    """``verdict`` as it may be shown in traces, events, messages and exceptions: an outage's ``error_message``
    (which may name the endpoint) becomes the public description of its code."""
    if verdict.error is None:
        return verdict
    public = describe_outage(verdict.error)
    return verdict if verdict.error_message == public else verdict.replace(error_message=public)


def exit_error(verdict: Verdict, stage: Stage) -> ContentBlockedError | GuardUnavailableError:
    """The exception for an ``error`` exit: an outage is a :class:`ModelGuardUnavailableError`, a policy block a
    :class:`ModelContentBlockedError`; neither is the other."""
    if verdict.error is not None:
        return ModelGuardUnavailableError(verdict, stage)
    return ModelContentBlockedError(verdict, stage)


def answer_text(settlement: Settlement, stage: Stage) -> str | None:
    """None: let the text go on. A string: answer (or replace) with it. Raises for an ``error`` exit."""
    if settlement.exit is Exit.PASS:
        return None
    if settlement.exit is Exit.ERROR:
        raise exit_error(settlement.verdict, stage)
    return settlement.text


def exits_conflict(other: str) -> str:
    """The message for an adapter given both ``exit_behavior`` and ``other`` (``action``, ``raise_on_block``)."""
    return (
        f"give {other}= or exit_behavior=, not both: exit_behavior decides what every enforced verdict does, "
        f"{other}= would decide it too (see docs/langchain.md, 'exit_behavior')"
    )


def is_stream_consumer(handler: BaseCallbackHandler) -> bool:
    """True for a handler that streams a run's tokens to a reader (LangGraph's messages mode, ``astream_events``
    v2 and v3), as opposed to a tracer that only records them."""
    return isinstance(handler, (_StreamingCallbackHandler, _V2StreamingCallbackHandler))


def callback_handlers(callbacks: Any) -> list[BaseCallbackHandler]:
    """The handlers of a config's ``callbacks`` (a manager, a list, or None), each once."""
    if isinstance(callbacks, BaseCallbackManager):
        found = [*callbacks.handlers, *callbacks.inheritable_handlers]
    else:
        found = list(callbacks or [])
    return list({id(h): h for h in found}.values())


def verdict_event(stage: Stage, verdict: Verdict) -> dict[str, Any]:
    """The payload of a ``nemoguard_verdict`` event (also used by the middleware)."""
    verdict = public_verdict(verdict)
    return {
        "stage": stage.value,
        "allowed": verdict.allowed,
        "unavailable": verdict.unavailable,
        "reason": verdict.reason,
        **verdict.to_dict(),
    }


def verdict_metadata(verdict: Verdict) -> dict[str, Any]:
    """The ``nemoguard_*`` metadata a traced check's run carries."""
    return {
        "nemoguard_verdict": "unavailable" if verdict.error is not None else ("safe" if verdict.safe else "unsafe"),
        "nemoguard_safe": verdict.safe,
        "nemoguard_allowed": verdict.allowed,
        "nemoguard_action": verdict.action.value,
        "nemoguard_categories": list(verdict.categories),
        "nemoguard_error": verdict.error.value if verdict.error else None,
        "nemoguard_latency_ms": round(verdict.latency_ms, 3),
        "nemoguard_cached": verdict.cached,
    }


def annotate_run(run_manager: Any, metadata: Mapping[str, Any]) -> None:
    """Add ``metadata`` to the tracers' record of a run that is still open (shown by LangSmith on end)."""
    for handler in [*run_manager.handlers, *run_manager.inheritable_handlers]:
        if isinstance(handler, (BaseTracer, AsyncBaseTracer)):
            run = handler.run_map.get(str(run_manager.run_id))
            if run is not None:
                run.extra.setdefault("metadata", {}).update(metadata)


def policy_for_run(
    guard: NemoGuard,
    policy: Policy | str | None,
    action: Action | str | None,
    refusal: str | None,
    config: RunnableConfig | None,
) -> Policy:
    """The policy for one call: ``configurable["nemoguard_policy"]`` beats ``policy``; overrides applied.

    ``action`` replaces the per-category action map (every unsafe verdict gets it); ``refusal`` replaces the
    policy's refusal text (both through :meth:`NemoGuard.policy_for`). Unknown names raise
    ``PolicyNotFoundError``.
    """
    configurable = ensure_config(config).get("configurable") or {}
    chosen = configurable.get(POLICY_CONFIG_KEY) or policy
    return guard.policy_for(chosen, action=action, refusal=refusal)


def dispatch_verdict(stage: Stage, verdict: Verdict) -> dict[str, Any]:
    """Tell a parent run (if any) about a verdict; returns the event payload."""
    from langchain_core.callbacks import dispatch_custom_event

    payload = verdict_event(stage, verdict)
    with contextlib.suppress(RuntimeError):  # no parent run: nobody to tell
        dispatch_custom_event(VERDICT_EVENT, payload)
    return payload


async def adispatch_verdict(stage: Stage, verdict: Verdict) -> dict[str, Any]:
    """The async twin of :func:`dispatch_verdict`."""
    from langchain_core.callbacks import adispatch_custom_event

    payload = verdict_event(stage, verdict)
    with contextlib.suppress(RuntimeError):
        await adispatch_custom_event(VERDICT_EVENT, payload)
    return payload


__all__ = [
    "NOSTREAM_TAG",
    "POLICY_CONFIG_KEY",
    "UNCHECKED_TAG",
    "VERDICT_EVENT",
    "ModelContentBlockedError",
    "ModelGuardUnavailableError",
    "adispatch_verdict",
    "annotate_run",
    "answer_text",
    "callback_handlers",
    "dispatch_verdict",
    "exit_error",
    "exits_conflict",
    "is_stream_consumer",
    "policy_for_run",
    "public_verdict",
    "verdict_event",
    "verdict_metadata",
]
