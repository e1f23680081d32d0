"""Traced checks: every guard check in LangChain is its own chain run, for the wrapper and the middleware alike.

A check run is named ``NemoGuard:<stage>`` (``NemoGuard:input``, ``NemoGuard:output``, ``NemoGuard:tool_call``,
``NemoGuard:tool_result``), tagged ``nemoguard``, and a child of whatever run is current (the guarded runnable's,
or the agent node that called the middleware hook). Its metadata carries the stage and the policy at start and the
verdict at the end (``nemoguard_safe``, ``nemoguard_allowed``, ``nemoguard_action``, ``nemoguard_categories``,
``nemoguard_error``, ``nemoguard_latency_ms``, ``nemoguard_cached``); its outputs carry the verdict. Each verdict
is also dispatched as a ``nemoguard_verdict`` custom event from inside the run.

What a run shows is what the caller decides to trace: the inputs are given by the adapter (the wrapper shows the
prompt and response it judged, which its own run traces already; the middleware shows sizes only). An outage's
``error_message``, which may name the endpoint, is replaced by a public description (:func:`.events.public_verdict`);
keys never reach a verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)

from ..core.conversation import Conversation
from ..core.errors import ContentBlockedError, Stage
from ..core.guard import NemoGuard
from ..core.policy import Policy
from ..core.verdict import Verdict
from .events import VERDICT_EVENT, annotate_run, public_verdict, verdict_event, verdict_metadata

CHECK_TAG = "nemoguard"
"""The tag on every check run."""


@dataclass(slots=True)
class CheckRun:
    """One traced guard check: the run's inputs, and the verdicts it reached (several for windows or images)."""

    stage: Stage
    policy: Policy
    inputs: dict[str, Any]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"NemoGuard:{self.stage.value}"

    @property
    def start_metadata(self) -> dict[str, Any]:
        return {"nemoguard_stage": self.stage.value, "nemoguard_policy": self.policy.name}

    def final(self) -> Verdict | None:
        """The first verdict that did not let its text pass, else the last one."""
        return next((v for v in self.verdicts if not v.allowed), self.verdicts[-1] if self.verdicts else None)

    def outputs(self) -> dict[str, Any]:
        final = self.final()
        out: dict[str, Any] = {"verdict": final.to_dict() if final else None}
        if final is not None:
            out["allowed"] = final.allowed
            out["reason"] = final.reason
        if len(self.verdicts) > 1:
            out["windows"] = [v.to_dict() for v in self.verdicts]
        return out


# --- sync ------------------------------------------------------------------------------------------------------


def start_check(check: CheckRun, config: RunnableConfig | None) -> CallbackManagerForChainRun:
    """Open the check's run as a child of ``config``'s current run."""
    cm = get_callback_manager_for_config(ensure_config(config))
    cm.add_metadata(check.start_metadata, inherit=False)
    cm.add_tags([CHECK_TAG], inherit=False)
    return cm.on_chain_start(None, check.inputs, name=check.name)


def report_check(check: CheckRun, verdict: Verdict, rm: CallbackManagerForChainRun) -> None:
    """Record a verdict on the run and dispatch its ``nemoguard_verdict`` event from inside it."""
    check.verdicts.append(public_verdict(verdict))
    dispatch_custom_event(VERDICT_EVENT, verdict_event(check.stage, verdict), config={"callbacks": rm.get_child()})


def end_check(check: CheckRun, rm: CallbackManagerForChainRun, error: BaseException | None = None) -> None:
    """Close the run with the verdict's metadata; a block is an outcome, not an error of the check."""
    final = check.final()
    if final is not None:
        annotate_run(rm, verdict_metadata(final))
    if error is not None and not isinstance(error, ContentBlockedError):
        rm.on_chain_error(error)
    else:
        rm.on_chain_end(check.outputs())


def traced_check(
    guard: NemoGuard, check: CheckRun, convs: Sequence[Conversation], config: RunnableConfig | None
) -> list[Verdict]:
    """Judge ``convs`` (one verdict each) inside one traced run; the verdicts come back public."""
    rm = start_check(check, config)
    try:
        verdicts = [guard.check(conversation=c, policy=check.policy, stage=check.stage) for c in convs]
    except BaseException as exc:
        end_check(check, rm, exc)
        raise
    for verdict in verdicts:
        report_check(check, verdict, rm)
    end_check(check, rm)
    return [public_verdict(v) for v in verdicts]


# --- async -----------------------------------------------------------------------------------------------------


async def astart_check(check: CheckRun, config: RunnableConfig | None) -> AsyncCallbackManagerForChainRun:
    """The async twin of :func:`start_check`."""
    cm = get_async_callback_manager_for_config(ensure_config(config))
    cm.add_metadata(check.start_metadata, inherit=False)
    cm.add_tags([CHECK_TAG], inherit=False)
    return await cm.on_chain_start(None, check.inputs, name=check.name)


async def areport_check(check: CheckRun, verdict: Verdict, rm: AsyncCallbackManagerForChainRun) -> None:
    """The async twin of :func:`report_check`."""
    check.verdicts.append(public_verdict(verdict))
    await adispatch_custom_event(
        VERDICT_EVENT, verdict_event(check.stage, verdict), config={"callbacks": rm.get_child()}
    )


async def aend_check(
    check: CheckRun, rm: AsyncCallbackManagerForChainRun, error: BaseException | None = None
) -> None:
    """The async twin of :func:`end_check`."""
    final = check.final()
    if final is not None:
        annotate_run(rm, verdict_metadata(final))
    if error is not None and not isinstance(error, ContentBlockedError):
        await rm.on_chain_error(error)
    else:
        await rm.on_chain_end(check.outputs())


async def atraced_check(
    guard: NemoGuard, check: CheckRun, convs: Sequence[Conversation], config: RunnableConfig | None
) -> list[Verdict]:
    """The async twin of :func:`traced_check` (the conversations are judged concurrently)."""
    rm = await astart_check(check, config)
    try:
        verdicts = await asyncio.gather(
            *(guard.acheck(conversation=c, policy=check.policy, stage=check.stage) for c in convs)
        )
    except BaseException as exc:
        await aend_check(check, rm, exc)
        raise
    for verdict in verdicts:
        await areport_check(check, verdict, rm)
    await aend_check(check, rm)
    return [public_verdict(v) for v in verdicts]


__all__ = [
    "CHECK_TAG",
    "CheckRun",
    "aend_check",
    "areport_check",
    "astart_check",
    "atraced_check",
    "end_check",
    "report_check",
    "start_check",
    "traced_check",
]
