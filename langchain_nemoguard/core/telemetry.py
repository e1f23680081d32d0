"""Observing checks: the hooks that metrics, traces and audit sinks plug into.

A guard built with ``AuditOptions(observers=[...])`` (or given one later with :meth:`NemoGuard.add_observer`)
tells each observer, in this order, about every check:

1. ``on_cache(hit, info)`` - the cache was asked;
2. ``on_check_start(info)`` - only on a cache miss, when the check goes to the model (a tracer opens its span
   here, a metrics observer counts the check in flight); what it returns comes back as ``token``;
3. ``on_check_end(token, record)`` - the verdict is decided (``token`` is None for a cache hit, which started
   nothing), or ``on_check_error(token, info, error)`` when the check raised (bad input);
4. ``on_think(record)`` / ``on_think_dropped(record, reason)`` - the background THINK audit of a decided check
   finished, or was dropped (queue full, shutdown);
5. ``on_record(record)`` - the complete record of a decided check: at once, or after its THINK audit when one
   was queued (audit sinks write it: :mod:`.audit`).

Observers subclass :class:`GuardObserver` and override what they need. A failing observer is logged and never
breaks a check. With no observer and no THINK audit configured, the guard builds none of this (the hot path
pays nothing). The implementations outside the core: ``langchain_nemoguard.observability`` (Prometheus
metrics, OpenTelemetry spans); here: :mod:`.audit` (JSONL and logging sinks).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .conversation import Conversation
    from .verdict import Verdict

logger = logging.getLogger("langchain_nemoguard")

ThinkStatus = Literal["off", "pending", "done", "dropped"]
SOURCES = ("library", "langchain", "litellm", "service")


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """What is known about a check before its verdict.

    Args:
        stage: ``input``, ``output``, ``tool_call``, ``tool_result`` or ``stream``.
        source: Who asked: ``library``, ``langchain``, ``litellm`` or ``service``.
        request_id: The caller's request or run id, when it gave one.
        policy: The policy's name.
        policy_fingerprint: ``Policy.fingerprint``.
        mode: The output mode.
        model: The model id.
        provider: The provider's name.
        conversation: What is judged (for the content hash; text only leaves through a sink that enables it).
        started: ``time.perf_counter()`` when the check began.
        started_ns: ``time.time_ns()`` when the check began (span start times).
        endpoint: The endpoint's public URL, when the operator asked for it in records (never credentials).
    """

    stage: str
    source: str
    request_id: str | None
    policy: str
    policy_fingerprint: str
    mode: str
    model: str
    provider: str
    conversation: Conversation = field(repr=False)
    started: float = 0.0
    started_ns: int = 0
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class ThinkAudit:
    """The background THINK re-judgement of a decided check.

    Args:
        verdict: The THINK verdict, narrowed to the check's stage (its ``reasoning`` is the trace; ``error`` set
            when the audit got no verdict).
        disagrees: True when its safe/unsafe differs from the deciding verdict's (never for an error).
        latency_ms: How long the audit took once started.
    """

    verdict: Verdict
    disagrees: bool
    latency_ms: float


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One decided check, as observers and audit sinks receive it.

    Args:
        id: A unique id (uuid4 hex).
        time: When the verdict was decided (seconds since the epoch).
        info: What was checked and how.
        verdict: The verdict the caller got (narrowed to the stage).
        think: The background THINK audit, once it finished.
        think_status: ``off`` (none asked), ``pending`` (queued), ``done`` or ``dropped``.
        dropped_reason: Why a THINK audit was dropped (``overflow``, ``shutdown``).
    """

    id: str
    time: float
    info: CheckInfo
    verdict: Verdict
    think: ThinkAudit | None = None
    think_status: ThinkStatus = "off"
    dropped_reason: str | None = None

    @classmethod
    def new(cls, info: CheckInfo, verdict: Verdict, *, think_status: ThinkStatus = "off") -> CheckRecord:
        return cls(uuid.uuid4().hex, time.time(), info, verdict, think_status=think_status)


class GuardObserver:
    """Base class of check observers: every hook does nothing until overridden (see the module docstring)."""

    def on_cache(self, hit: bool, info: CheckInfo) -> None:
        """The verdict cache was asked for this check.

        Args:
            hit: True when a cached verdict answered.
            info: The check.
        """

    def on_check_start(self, info: CheckInfo) -> Any:
        """A check goes to the model (never for a cache hit); the return value comes back as ``token``.

        Args:
            info: The check.
        """
        return None

    def on_check_end(self, token: Any, record: CheckRecord) -> None:
        """A verdict was decided.

        Args:
            token: What ``on_check_start`` returned, or None for a cache hit.
            record: The decided check.
        """

    def on_check_error(self, token: Any, info: CheckInfo, error: BaseException) -> None:
        """A started check raised instead (invalid input found late, a cancelled task).

        Args:
            token: What ``on_check_start`` returned.
            info: The check.
            error: What it raised.
        """

    def on_think(self, record: CheckRecord) -> None:
        """A background THINK audit finished; ``record.think`` holds it.

        Args:
            record: The decided check, with its audit.
        """

    def on_think_dropped(self, record: CheckRecord, reason: str) -> None:
        """A queued THINK audit was dropped.

        Args:
            record: The decided check whose audit is lost.
            reason: ``overflow`` (the queue was full, the oldest went) or ``shutdown``.
        """

    def on_record(self, record: CheckRecord) -> None:
        """The complete record of a decided check (with its THINK audit, when one ran).

        Args:
            record: The decided check.
        """

    def close(self) -> None:
        """Release what the observer holds (files); called by the guard's ``close``."""


class Telemetry:
    """The observers of one guard, called safely (an observer that raises is logged, once per hook and observer
    until it succeeds again, and skipped)."""

    def __init__(self, observers: Sequence[GuardObserver] = ()) -> None:
        self._observers: tuple[GuardObserver, ...] = tuple(observers)
        self._lock = threading.Lock()
        self._failing: set[tuple[int, str]] = set()

    @property
    def observers(self) -> tuple[GuardObserver, ...]:
        return self._observers

    def add(self, observer: GuardObserver) -> None:
        with self._lock:
            self._observers = (*self._observers, observer)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def _call(self, observer: GuardObserver, hook: str, *args: Any) -> Any:
        try:
            result = getattr(observer, hook)(*args)
        except Exception:
            key = (id(observer), hook)
            if key not in self._failing:
                self._failing.add(key)
                logger.exception("nemoguard: observer %s failed in %s", type(observer).__name__, hook)
            return None
        if self._failing:
            self._failing.discard((id(observer), hook))
        return result

    def cache(self, hit: bool, info: CheckInfo) -> None:
        for o in self._observers:
            self._call(o, "on_cache", hit, info)

    def start(self, info: CheckInfo) -> tuple[Any, ...]:
        return tuple(self._call(o, "on_check_start", info) for o in self._observers)

    def end(self, tokens: tuple[Any, ...] | None, record: CheckRecord) -> None:
        for i, o in enumerate(self._observers):
            self._call(o, "on_check_end", _token(tokens, i), record)

    def error(self, tokens: tuple[Any, ...], info: CheckInfo, error: BaseException) -> None:
        for i, o in enumerate(self._observers):
            self._call(o, "on_check_error", _token(tokens, i), info, error)

    def think(self, record: CheckRecord) -> None:
        for o in self._observers:
            self._call(o, "on_think", record)

    def dropped(self, record: CheckRecord, reason: str) -> None:
        for o in self._observers:
            self._call(o, "on_think_dropped", record, reason)

    def record(self, record: CheckRecord) -> None:
        for o in self._observers:
            self._call(o, "on_record", record)

    def close(self) -> None:
        for o in self._observers:
            self._call(o, "close")


def _token(tokens: tuple[Any, ...] | None, i: int) -> Any:
    # an observer added while a check was in flight has no token for it
    return tokens[i] if tokens is not None and i < len(tokens) else None


__all__ = ["SOURCES", "CheckInfo", "CheckRecord", "GuardObserver", "Telemetry", "ThinkAudit", "ThinkStatus"]
