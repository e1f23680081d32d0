"""Prometheus metrics of a guard (``pip install 'langchain-nemoguard[prometheus]'``).

Every series (names with the default namespace ``nemoguard``):

| metric | type | labels | what |
|---|---|---|---|
| ``nemoguard_checks_total`` | counter | stage, outcome, verdict, policy, source | decided checks (cache hits too) |
| ``nemoguard_check_categories_total`` | counter | stage, policy, category | categories of unsafe verdicts |
| ``nemoguard_outages_total`` | counter | stage, policy, error, handling | checks without a verdict; ``handling`` is ``fail_closed`` or ``fail_open`` |
| ``nemoguard_check_duration_seconds`` | histogram | stage, mode | checks that went to the model |
| ``nemoguard_cache_lookups_total`` | counter | result | ``hit`` / ``miss`` |
| ``nemoguard_checks_in_flight`` | gauge | | checks waiting for the model now |
| ``nemoguard_think_audits_total`` | counter | result | background THINK audits: ``agree``, ``disagree``, ``error`` |
| ``nemoguard_think_disagreements_total`` | counter | stage, policy | THINK audits whose verdict differs from the decision |
| ``nemoguard_think_audits_dropped_total`` | counter | reason | ``overflow`` (queue full), ``shutdown``, ``error`` |

``outcome`` is ``pass``, ``refuse`` or ``block`` (``Verdict.outcome``); ``verdict`` is ``safe``, ``unsafe`` or
``error``. Label values are bounded: categories beyond ``max_categories`` distinct names (and sources other
than the four known ones) count as ``other``, so model output cannot grow the series without limit.

Each :class:`GuardMetrics` owns a ``CollectorRegistry`` unless one is given (the process-global
``prometheus_client.REGISTRY`` only when passed explicitly), so two guards or two tests never share counters.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

from ..core.audit import verdict_label
from ..core.errors import missing_extra
from ..core.telemetry import SOURCES, CheckInfo, CheckRecord, GuardObserver

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..core.guard import NemoGuard

BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_MAX_LABEL: Final = 80


class GuardMetrics(GuardObserver):
    """Prometheus metrics of the checks of one or more guards (the table in the module docstring).

    Args:
        registry: Where the metrics are registered (None: a new ``CollectorRegistry`` of its own).
        namespace: The metric name prefix.
        max_categories: Distinct category label values kept; further ones count as ``other``.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "nemoguard", max_categories: int = 100
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as exc:
            raise missing_extra(exc, "GuardMetrics", "prometheus") from None
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r, ns = self.registry, namespace
        self.checks = Counter(
            "checks", "Decided checks", ["stage", "outcome", "verdict", "policy", "source"], namespace=ns, registry=r
        )
        self.categories = Counter(
            "check_categories", "Categories of unsafe verdicts", ["stage", "policy", "category"], namespace=ns, registry=r
        )
        self.outages = Counter(
            "outages",
            "Checks without a verdict (guard unavailable), by how they were handled",
            ["stage", "policy", "error", "handling"],
            namespace=ns,
            registry=r,
        )
        self.duration = Histogram(
            "check_duration_seconds",
            "Duration of checks that went to the model",
            ["stage", "mode"],
            namespace=ns,
            registry=r,
            buckets=BUCKETS,
        )
        self.cache = Counter("cache_lookups", "Verdict cache lookups", ["result"], namespace=ns, registry=r)
        self.in_flight = Gauge("checks_in_flight", "Checks waiting for the model", namespace=ns, registry=r)
        self.think = Counter("think_audits", "Background THINK audits", ["result"], namespace=ns, registry=r)
        self.disagreements = Counter(
            "think_disagreements",
            "THINK audits whose verdict differs from the deciding one",
            ["stage", "policy"],
            namespace=ns,
            registry=r,
        )
        self.dropped = Counter(
            "think_audits_dropped", "THINK audits dropped", ["reason"], namespace=ns, registry=r
        )
        self.max_categories = max_categories
        self._categories: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GuardMetrics(max_categories={self.max_categories})"

    # --- what the text format shows ------------------------------------------------------------------------

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` of :meth:`exposition` (Prometheus text format 0.0.4)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return str(CONTENT_TYPE_LATEST)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what ``/metrics`` answers)."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0.0 when absent), e.g. ``value("nemoguard_checks_total", stage="input",
        ...)``; for tests and dashboards in code.

        Args:
            name: The sample's full name (with ``_total``, ``_count``, ``_bucket``...).
            **labels: Its labels (all of them).
        """
        got = self.registry.get_sample_value(name, labels)
        return float(got) if got is not None else 0.0

    # --- hooks ---------------------------------------------------------------------------------------------

    def on_cache(self, hit: bool, info: CheckInfo) -> None:
        """Count a cache lookup.

        Args:
            hit: Whether it hit.
            info: The check.
        """
        self.cache.labels("hit" if hit else "miss").inc()

    def on_check_start(self, info: CheckInfo) -> Any:
        """Count the check in flight.

        Args:
            info: The check.
        """
        self.in_flight.inc()
        return True

    def on_check_end(self, token: Any, record: CheckRecord) -> None:
        """Count the decided check.

        Args:
            token: True when ``on_check_start`` counted it in flight.
            record: The decided check.
        """
        info, v = record.info, record.verdict
        if token:
            self.in_flight.dec()
            self.duration.labels(info.stage, info.mode).observe(v.latency_ms / 1e3)
        source = info.source if info.source in SOURCES else "other"
        self.checks.labels(info.stage, v.outcome.value, verdict_label(v), _label(info.policy), source).inc()
        if v.error is not None:
            handling = "fail_open" if v.safe else "fail_closed"
            self.outages.labels(info.stage, _label(info.policy), v.error.value, handling).inc()
        elif not v.safe:
            for category in v.categories:
                self.categories.labels(info.stage, _label(info.policy), self._category(category)).inc()

    def on_check_error(self, token: Any, info: CheckInfo, error: BaseException) -> None:
        """A started check raised: it is no longer in flight.

        Args:
            token: True when ``on_check_start`` counted it in flight.
            info: The check.
            error: What it raised.
        """
        if token:
            self.in_flight.dec()

    def on_think(self, record: CheckRecord) -> None:
        """Count a finished THINK audit.

        Args:
            record: The decided check with its audit.
        """
        think = record.think
        if think is None:
            return
        if think.verdict.error is not None:
            self.think.labels("error").inc()
        elif think.disagrees:
            self.think.labels("disagree").inc()
            self.disagreements.labels(record.info.stage, _label(record.info.policy)).inc()
        else:
            self.think.labels("agree").inc()

    def on_think_dropped(self, record: CheckRecord, reason: str) -> None:
        """Count a dropped THINK audit.

        Args:
            record: The decided check whose audit is lost.
            reason: Why.
        """
        self.dropped.labels(reason).inc()

    def _category(self, name: str) -> str:
        name = _label(name)
        with self._lock:
            if name in self._categories:
                return name
            if len(self._categories) < self.max_categories:
                self._categories.add(name)
                return name
        return "other"


def _label(value: str) -> str:
    return value if len(value) <= _MAX_LABEL else value[: _MAX_LABEL - 3] + "..."


def enable_metrics(guard: NemoGuard, registry: CollectorRegistry | None = None) -> GuardMetrics:
    """Prometheus metrics for ``guard`` in one call: a :class:`GuardMetrics`, added as its observer.

    Args:
        guard: The guard to measure.
        registry: Where to register (None: a registry of its own; ``metrics.exposition()`` serves it).
    """
    metrics = GuardMetrics(registry)
    guard.add_observer(metrics)
    return metrics


__all__ = ["BUCKETS", "GuardMetrics", "enable_metrics"]
