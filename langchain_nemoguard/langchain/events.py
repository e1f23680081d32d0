"""What LangChain sees of a check: tags, custom events, run metadata, the configurable policy, the block.

Shared by ``GuardedRunnable`` and ``NemoGuardMiddleware``, so that neither imports the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from langchain_core.exceptions import ModelError
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer

from ..core.errors import ContentBlockedError, Stage
from ..core.guard import NemoGuard
from ..core.policy import Policy
from ..core.verdict import Action, Verdict

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


def verdict_event(stage: Stage, verdict: Verdict) -> dict[str, Any]:
    """The payload of a ``nemoguard_verdict`` event (also used by the middleware)."""
    return {"stage": stage.value, "allowed": verdict.allowed, "reason": verdict.reason, **verdict.to_dict()}


def verdict_metadata(verdict: Verdict) -> dict[str, Any]:
    """The ``nemoguard_*`` metadata a traced check's run carries."""
    return {
        "nemoguard_safe": verdict.safe,
        "nemoguard_allowed": verdict.allowed,
        "nemoguard_action": verdict.action.value,
        "nemoguard_categories": list(verdict.categories),
        "nemoguard_error": verdict.error.value if verdict.error else None,
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
    "adispatch_verdict",
    "annotate_run",
    "dispatch_verdict",
    "policy_for_run",
    "verdict_event",
    "verdict_metadata",
]
