"""Observing a guard: Prometheus metrics, OpenTelemetry spans and the audit trail, each one call away.

    from langchain_nemoguard import NemoGuard
    from langchain_nemoguard.observability import JsonlAuditSink, enable_metrics, enable_tracing

    guard = NemoGuard()
    metrics = enable_metrics(guard)          # its own registry; metrics.exposition() is the /metrics text
    enable_tracing(guard)                    # one span per check, if OpenTelemetry is installed
    guard.add_observer(JsonlAuditSink("audit.jsonl"))

* :class:`GuardMetrics` (``pip install 'langchain-nemoguard[prometheus]'``) - checks by stage, outcome, verdict,
  policy and category; outages split fail-closed / fail-open; latency; cache hits and misses; checks in flight;
  THINK audits, disagreements and drops. A registry per instance, never the process-global one unless given.
* :class:`GuardTracer` (``[otel]``, the OpenTelemetry API only) - one span per check that went to the model
  (none for cache hits) with GenAI and OpenInference guardrail attributes; content off unless asked; nothing
  at all when OpenTelemetry is not installed.
* :class:`JsonlAuditSink`, :class:`LoggingAuditSink` (no extra) - the audit trail (``core/audit.py``).

All are observers (``core/telemetry.py``): pass them in ``AuditOptions(observers=[...])`` or add them later.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.audit import JsonlAuditSink, LoggingAuditSink
    from ..core.telemetry import GuardObserver
    from .metrics import GuardMetrics, enable_metrics
    from .tracing import GuardTracer, enable_tracing

_WHERE = MappingProxyType(
    {
        "GuardMetrics": ".metrics",
        "enable_metrics": ".metrics",
        "GuardTracer": ".tracing",
        "enable_tracing": ".tracing",
        "JsonlAuditSink": "..core.audit",
        "LoggingAuditSink": "..core.audit",
        "GuardObserver": "..core.telemetry",
    }
)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "GuardMetrics",
    "GuardObserver",
    "GuardTracer",
    "JsonlAuditSink",
    "LoggingAuditSink",
    "enable_metrics",
    "enable_tracing",
]
