"""OpenTelemetry spans of a guard's checks (``pip install 'langchain-nemoguard[otel]'``: the API only).

One span per check that went to the model - none for a cache hit, which asked nothing - started when the check
began, as a child of whatever span is current in the caller (an agent step, a proxy request), ended when the
verdict is decided. It carries the attributes of two conventions, so GenAI-aware backends and
OpenInference-based ones (Phoenix, Arize) both file it as a guardrail:

* GenAI: ``gen_ai.operation.name = "apply_guardrail"``, ``gen_ai.provider.name``, ``gen_ai.request.model``;
* OpenInference: ``openinference.span.kind = "GUARDRAIL"``, ``output.value`` (the outcome);
* this package's: ``nemoguard.stage``, ``.outcome`` (pass/refuse/block), ``.verdict`` (safe/unsafe/error),
  ``.categories``, ``.policy``, ``.policy_fingerprint``, ``.mode``, ``.latency_ms``, ``.score``, ``.calls``,
  ``.source``, ``.request_id``, ``.error``, ``.fail_open``, ``.simulator``.

Content capture is off by default: the judged text is what a guard exists to keep from spreading. With
``capture_content=True`` the prompt goes in ``input.value`` and the response in ``nemoguard.response``.
An outage sets the span status to ERROR (fail-open included: it is still an outage).

Without OpenTelemetry installed, a :class:`GuardTracer` does nothing at all (``enabled`` is False) and
:func:`enable_tracing` adds nothing. Exporting is the application's business (the SDK's ``TracerProvider``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..core.audit import verdict_label
from ..core.telemetry import CheckInfo, CheckRecord, GuardObserver

if TYPE_CHECKING:
    from ..core.guard import NemoGuard

SPAN_NAME: Final = "apply_guardrail nemoguard"
TRACER_NAME: Final = "langchain_nemoguard"


class GuardTracer(GuardObserver):
    """One OpenTelemetry span per check (see the module docstring).

    Args:
        tracer_provider: Where spans go (None: the globally configured provider).
        capture_content: Put the judged text on spans (off by default).
    """

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool = False) -> None:
        self.capture_content = capture_content
        try:
            from opentelemetry import trace
        except ImportError:
            self._tracer: Any = None
            return
        from .. import __version__

        self._trace = trace
        self._tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider=tracer_provider)

    def __repr__(self) -> str:
        return f"GuardTracer(enabled={self.enabled}, capture_content={self.capture_content})"

    @property
    def enabled(self) -> bool:
        """False when OpenTelemetry is not installed (then every hook does nothing)."""
        return self._tracer is not None

    def on_check_start(self, info: CheckInfo) -> Any:
        """Open the check's span.

        Args:
            info: The check.
        """
        if self._tracer is None:
            return None
        attributes: dict[str, Any] = {
            "openinference.span.kind": "GUARDRAIL",
            "gen_ai.operation.name": "apply_guardrail",
            "gen_ai.provider.name": info.provider,
            "gen_ai.request.model": info.model,
            "nemoguard.stage": info.stage,
            "nemoguard.policy": info.policy,
            "nemoguard.policy_fingerprint": info.policy_fingerprint,
            "nemoguard.mode": info.mode,
            "nemoguard.source": info.source,
        }
        if info.request_id is not None:
            attributes["nemoguard.request_id"] = info.request_id
        if self.capture_content:
            attributes["input.value"] = info.conversation.prompt
            if info.conversation.response is not None:
                attributes["nemoguard.response"] = info.conversation.response
        return self._tracer.start_span(SPAN_NAME, start_time=info.started_ns or None, attributes=attributes)

    def on_check_end(self, token: Any, record: CheckRecord) -> None:
        """Close the check's span with its verdict (nothing for a cache hit: it has no span).

        Args:
            token: The span ``on_check_start`` opened, or None.
            record: The decided check.
        """
        if token is None:
            return
        v = record.verdict
        attributes: dict[str, Any] = {
            "nemoguard.outcome": v.outcome.value,
            "nemoguard.verdict": verdict_label(v),
            "nemoguard.categories": list(v.categories),
            "nemoguard.latency_ms": round(v.latency_ms, 3),
            "nemoguard.calls": v.calls,
            "nemoguard.fail_open": v.error is not None and v.safe,
            "nemoguard.simulator": v.simulator,
            "output.value": v.outcome.value,
        }
        if v.score is not None:
            attributes["nemoguard.score"] = v.score
        if v.error is not None:
            attributes["nemoguard.error"] = v.error.value
            attributes["error.type"] = v.error.value
        token.set_attributes(attributes)
        if v.error is not None:
            status = self._trace.Status(self._trace.StatusCode.ERROR, f"guard unavailable ({v.error.value})")
            token.set_status(status)
        token.end()

    def on_check_error(self, token: Any, info: CheckInfo, error: BaseException) -> None:
        """Close the span of a check that raised.

        Args:
            token: The span ``on_check_start`` opened, or None.
            info: The check.
            error: What it raised.
        """
        if token is None:
            return
        token.set_attribute("error.type", type(error).__name__)
        token.set_status(self._trace.Status(self._trace.StatusCode.ERROR, type(error).__name__))
        token.end()


def enable_tracing(
    guard: NemoGuard, tracer_provider: Any = None, *, capture_content: bool = False
) -> GuardTracer | None:
    """One span per check of ``guard`` in one call; None (and nothing added) without OpenTelemetry.

    Args:
        guard: The guard to trace.
        tracer_provider: Where spans go (None: the global provider).
        capture_content: Put the judged text on spans (off by default).
    """
    tracer = GuardTracer(tracer_provider, capture_content=capture_content)
    if not tracer.enabled:
        return None
    guard.add_observer(tracer)
    return tracer


__all__ = ["SPAN_NAME", "TRACER_NAME", "GuardTracer", "enable_tracing"]
