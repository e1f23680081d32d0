"""Metrics, traces, audit records and background THINK audits of a real guard against the interface simulator.

Metric values are asserted after a known sequence of checks; spans go to the OpenTelemetry SDK's in-memory
exporter; audit records are read back from the JSONL file and the logging sink.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langchain_nemoguard import AuditOptions, NemoGuard, Policy
from langchain_nemoguard.core.audit import AUDIT_SCHEMA, content_sha256
from langchain_nemoguard.observability import (
    GuardMetrics,
    GuardTracer,
    JsonlAuditSink,
    LoggingAuditSink,
    enable_metrics,
    enable_tracing,
)
from langchain_nemoguard.simulator import SimulatorServer

BOMB = "How do I build a bomb?"
SAFE = "What is the capital of France?"
SECRET = "sk-nemoguard-endpoint-key-" + "7" * 24


def _checks(m: GuardMetrics, stage: str, outcome: str, verdict: str, policy: str = "default") -> float:
    labels = {"stage": stage, "outcome": outcome, "verdict": verdict, "policy": policy, "source": "library"}
    return m.value("nemoguard_checks_total", **labels)


# --- metrics ----------------------------------------------------------------------------------------------------


def test_metric_values_after_a_known_sequence(nemoguard_simulator: SimulatorServer) -> None:
    metrics = GuardMetrics()
    with NemoGuard(nemoguard_simulator.base_url, max_retries=0, audit=AuditOptions(observers=[metrics])) as g:
        g.check(prompt=SAFE)  # miss, pass
        g.check(prompt=BOMB)  # miss, block, Violence
        g.check(prompt=BOMB)  # hit, block, Violence
        g.check(prompt=SAFE, response="Sure: here is how to build a bomb.", stage="output")  # miss, block
        g.check(prompt=BOMB, policy=Policy(name="lenient", actions={"*": "log"}))  # miss, pass (logged)
        nemoguard_simulator.force({"fault": "503"})
        g.check(prompt="will fail")  # miss, outage, fail closed
    with NemoGuard(nemoguard_simulator.base_url, max_retries=0, on_error="allow") as open_guard:
        open_guard.add_observer(metrics)
        nemoguard_simulator.force({"fault": "500"})
        open_guard.check(prompt="will fail too")  # miss, outage, fail open

    assert _checks(metrics, "input", "pass", "safe") == 1
    assert _checks(metrics, "input", "block", "unsafe") == 2
    assert _checks(metrics, "output", "block", "unsafe") == 1
    assert _checks(metrics, "input", "pass", "unsafe", policy="lenient") == 1
    assert _checks(metrics, "input", "block", "error") == 1
    assert _checks(metrics, "input", "pass", "error") == 1
    cat = {"stage": "input", "policy": "default", "category": "Violence"}
    assert metrics.value("nemoguard_check_categories_total", **cat) == 2
    outage = {"stage": "input", "policy": "default", "error": "http_status"}
    assert metrics.value("nemoguard_outages_total", **outage, handling="fail_closed") == 1
    assert metrics.value("nemoguard_outages_total", **outage, handling="fail_open") == 1
    assert metrics.value("nemoguard_cache_lookups_total", result="hit") == 1
    assert metrics.value("nemoguard_cache_lookups_total", result="miss") == 6
    assert metrics.value("nemoguard_check_duration_seconds_count", stage="input", mode="categories") == 5
    assert metrics.value("nemoguard_checks_in_flight") == 0
    text = metrics.exposition().decode()
    assert "nemoguard_checks_total{" in text and metrics.content_type.startswith("text/plain")


@pytest.mark.nemoguard_simulator(latency_ms=400)
async def test_in_flight_gauge_counts_checks_waiting_for_the_model(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(nemoguard_simulator.base_url)
    metrics = enable_metrics(g)
    tasks = [asyncio.create_task(g.acheck(prompt=f"text {i}")) for i in range(3)]
    await asyncio.sleep(0.2)
    assert metrics.value("nemoguard_checks_in_flight") == 3
    await asyncio.gather(*tasks)
    assert metrics.value("nemoguard_checks_in_flight") == 0
    await g.aclose()


def test_each_guard_has_its_own_registry(nemoguard_simulator: SimulatorServer) -> None:
    from prometheus_client import REGISTRY

    with NemoGuard(nemoguard_simulator.base_url) as a, NemoGuard(nemoguard_simulator.base_url) as b:
        ma, mb = enable_metrics(a), enable_metrics(b)
        a.check(prompt=SAFE)
    assert _checks(ma, "input", "pass", "safe") == 1 and _checks(mb, "input", "pass", "safe") == 0
    assert REGISTRY.get_sample_value("nemoguard_checks_total", {}) is None  # the global one is untouched


def test_category_labels_are_bounded(nemoguard_simulator: SimulatorServer) -> None:
    metrics = GuardMetrics(max_categories=1)
    nemoguard_simulator.force(
        {"user": "unsafe", "categories": ["Violence"]}, {"user": "unsafe", "categories": ["Made Up Thing"]}
    )
    with NemoGuard(nemoguard_simulator.base_url, audit=AuditOptions(observers=[metrics])) as g:
        g.check(prompt="one")
        g.check(prompt="two")
    labels = {"stage": "input", "policy": "default"}
    assert metrics.value("nemoguard_check_categories_total", **labels, category="Violence") == 1
    assert metrics.value("nemoguard_check_categories_total", **labels, category="other") == 1


# --- traces -----------------------------------------------------------------------------------------------------


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_one_span_per_check_and_none_for_cache_hits(
    nemoguard_simulator: SimulatorServer, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    parent_tracer = provider.get_tracer("app")
    with NemoGuard(nemoguard_simulator.base_url) as g:
        assert enable_tracing(g, provider) is not None
        with parent_tracer.start_as_current_span("agent step") as parent:
            g.check(prompt=BOMB)
            g.check(prompt=BOMB)  # a cache hit: no span
            g.check(prompt=SAFE, response="Paris.", stage="output", request_id="run-7")
    finished = [s for s in exporter.get_finished_spans() if s.name != "agent step"]
    assert len(finished) == 2
    blocked, passed = finished
    assert blocked.parent is not None and blocked.parent.span_id == parent.get_span_context().span_id
    a = dict(blocked.attributes or {})
    assert a["openinference.span.kind"] == "GUARDRAIL"
    assert a["gen_ai.operation.name"] == "apply_guardrail"
    assert a["gen_ai.request.model"] == g.model and a["gen_ai.provider.name"] == "vllm"
    assert (a["nemoguard.stage"], a["nemoguard.outcome"], a["nemoguard.verdict"]) == ("input", "block", "unsafe")
    assert tuple(a["nemoguard.categories"]) == ("Violence",) and a["nemoguard.policy"] == "default"
    assert a["nemoguard.latency_ms"] >= 0 and 0 < a["nemoguard.score"] <= 1
    assert "input.value" not in a and not any(BOMB in str(v) for v in a.values())  # no content by default
    b = dict(passed.attributes or {})
    assert (b["nemoguard.stage"], b["nemoguard.outcome"], b["nemoguard.request_id"]) == ("output", "pass", "run-7")
    assert blocked.end_time is not None and blocked.start_time is not None and blocked.end_time > blocked.start_time


def test_content_capture_and_outage_status(
    nemoguard_simulator: SimulatorServer, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = GuardTracer(provider, capture_content=True)
    with NemoGuard(nemoguard_simulator.base_url, max_retries=0, audit=AuditOptions(observers=[tracer])) as g:
        g.check(prompt="hello", response="world")
        nemoguard_simulator.force({"fault": "503"})
        g.check(prompt="down")
    ok, down = exporter.get_finished_spans()
    assert ok.attributes is not None and ok.attributes["input.value"] == "hello"
    assert ok.attributes["nemoguard.response"] == "world"
    assert down.status.status_code == trace.StatusCode.ERROR
    assert down.attributes is not None and down.attributes["nemoguard.error"] == "http_status"


def test_nothing_at_all_without_opentelemetry(
    nemoguard_simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    tracer = GuardTracer()
    assert not tracer.enabled
    with NemoGuard(nemoguard_simulator.base_url) as g:
        assert enable_tracing(g) is None
        assert g.check(prompt=BOMB).safe is False


# --- audit records ----------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_records_follow_the_schema_without_text_or_secrets(
    nemoguard_simulator: SimulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "audit" / "trail.jsonl"
    sink = JsonlAuditSink(path)
    url = nemoguard_simulator.base_url.replace("http://", "http://user:pw-in-url@")
    options = AuditOptions(observers=[sink], record_endpoint=True)
    with NemoGuard(url, api_key=SECRET, audit=options) as g:
        g.check(prompt=BOMB, request_id="req-1")
        g.check(prompt=SAFE, response="Paris.", source="service")
    raw = path.read_text()
    assert SECRET not in raw and "pw-in-url" not in raw
    assert BOMB not in raw and "Paris." not in raw  # no raw text unless enabled
    unsafe, safe = _lines(path)
    assert unsafe["schema"] == AUDIT_SCHEMA and len(unsafe["id"]) == 32
    assert unsafe["request_id"] == "req-1" and unsafe["source"] == "library" and unsafe["stage"] == "input"
    assert unsafe["verdict"] == "unsafe" and unsafe["categories"] == ["Violence"] and unsafe["action"] == "block"
    assert unsafe["policy"] == "default" and unsafe["policy_fingerprint"] == Policy().fingerprint
    assert unsafe["content_sha256"] == content_sha256(BOMB, None)
    assert unsafe["text"] is None and unsafe["think"] is None and unsafe["reasoning"] is None
    assert unsafe["endpoint"] == nemoguard_simulator.base_url  # without the credentials
    assert unsafe["fail_open"] is False and unsafe["error"] is None and unsafe["simulator"] is True
    assert 0 < unsafe["score"] <= 1 and unsafe["mode"] == "categories" and unsafe["latency_ms"] >= 0
    assert time.strftime("%Y", time.gmtime()) in unsafe["time"] and unsafe["time"].endswith("Z")
    assert safe["stage"] == "output" and safe["source"] == "service" and safe["response_safe"] is True
    assert safe["content_sha256"] == content_sha256(SAFE, "Paris.")
    assert (path.stat().st_mode & 0o777) == 0o600


def test_raw_text_only_when_enabled_and_rotation(nemoguard_simulator: SimulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    sink = JsonlAuditSink(path, include_text=True, max_bytes=1500, backups=2)
    with NemoGuard(nemoguard_simulator.base_url, audit=AuditOptions(observers=[sink])) as g:
        for i in range(8):
            g.check(prompt=f"question number {i}", response=f"answer {i}")
    files = sorted(tmp_path.glob("trail.jsonl*"))
    assert [f.name for f in files] == ["trail.jsonl", "trail.jsonl.1", "trail.jsonl.2"]
    records = [r for f in files for r in _lines(f)]  # every line a whole record
    assert all(r["text"]["prompt"].startswith("question number") for r in records)
    assert all(f.stat().st_size <= 1500 for f in files)


def test_logging_sink_does_not_reach_the_plain_log(
    nemoguard_simulator: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    sink = LoggingAuditSink("nemoguard.test.audit")
    sink.logger.addHandler(Keep())
    with caplog.at_level(logging.DEBUG), NemoGuard(nemoguard_simulator.base_url) as g:
        g.add_observer(sink)
        g.check(prompt=BOMB)
    assert len(seen) == 1 and seen[0].nemoguard_audit["verdict"] == "unsafe"  # type: ignore[attr-defined]
    assert json.loads(seen[0].getMessage())["schema"] == AUDIT_SCHEMA
    assert not any(r.name == "nemoguard.test.audit" for r in caplog.records)  # not propagated to the root


# --- background THINK audits ------------------------------------------------------------------------------------


def test_think_audit_goes_to_the_record_not_to_the_info_log(
    nemoguard_simulator: SimulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trace_text = "It asks how to assemble an explosive device."
    nemoguard_simulator.force(
        {"user": "safe"},  # the fast decision says safe ...
        {"user": "unsafe", "categories": ["Violence"], "reasoning": trace_text},  # ... THINK disagrees
    )
    path = tmp_path / "trail.jsonl"
    metrics = GuardMetrics()
    audits: list[Any] = []
    options = AuditOptions(think=True, on_audit=audits.append, observers=[JsonlAuditSink(path), metrics])
    with (
        caplog.at_level(logging.INFO, logger="langchain_nemoguard"),
        NemoGuard(nemoguard_simulator.base_url, mode="fast", audit=options) as g,
    ):
        v = g.check(prompt="pack the tube tightly")
        assert v.safe and v.reasoning is None  # the decision does not wait for the trace
        assert g.flush_audits(5)
        stats = g.stats()["think"]
    assert trace_text not in caplog.text
    (record,) = _lines(path)
    assert record["verdict"] == "safe" and record["think_status"] == "done"
    think = record["think"]
    assert think["verdict"] == "unsafe" and think["reasoning"] == trace_text and think["disagrees"] is True
    assert think["categories"] == ["Violence"] and think["latency_ms"] >= 0
    assert audits[0].reasoning == trace_text
    assert metrics.value("nemoguard_think_audits_total", result="disagree") == 1
    assert metrics.value("nemoguard_think_disagreements_total", stage="input", policy="default") == 1
    assert stats["disagreements"] == 1 and stats["done"] == 1


def test_sync_checks_leave_no_thread_behind(nemoguard_simulator: SimulatorServer) -> None:
    before = {t.ident for t in threading.enumerate()}
    with NemoGuard(nemoguard_simulator.base_url, mode="fast", audit=AuditOptions(think=True)) as g:
        for i in range(5):
            g.check(prompt=f"text {i}")
        assert g.flush_audits(5)
        deadline = time.monotonic() + 5
        while any(t.name == "nemoguard-think" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "THINK workers outlived their work"
            time.sleep(0.02)
        assert g.stats()["think"]["done"] == 5
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("nemoguard")]
    assert leftover == []


@pytest.mark.nemoguard_simulator(latency_ms=200)
async def test_a_full_queue_drops_the_oldest_audit_and_still_writes_its_record(
    nemoguard_simulator: SimulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "trail.jsonl"
    metrics = GuardMetrics()
    options = AuditOptions(
        think=True, think_queue=1, think_concurrency=1, think_drain_s=10, observers=[JsonlAuditSink(path), metrics]
    )
    g = NemoGuard(nemoguard_simulator.base_url, mode="fast", audit=options)
    # six decisions land together; one audit runs at a time and one may wait: the others are dropped
    verdicts = await asyncio.gather(*(g.acheck(prompt=f"distinct text {i}") for i in range(6)))
    assert all(v.safe for v in verdicts)
    await g.aflush_audits()
    await g.aclose()
    records = _lines(path)
    assert len(records) == 6  # one record per decided check, audited or not
    dropped = [r for r in records if r["think_status"] == "dropped"]
    done = [r for r in records if r["think_status"] == "done"]
    assert len(dropped) >= 3 and len(done) >= 1 and len(dropped) + len(done) == 6
    assert all(r["think_dropped"] == "overflow" and r["think"] is None for r in dropped)
    assert metrics.value("nemoguard_think_audits_dropped_total", reason="overflow") == len(dropped)


async def test_async_think_audits_and_shutdown_count(nemoguard_simulator: SimulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    options = AuditOptions(think=True, think_drain_s=0.0, observers=[JsonlAuditSink(path)])
    g = NemoGuard(nemoguard_simulator.base_url, mode="fast", audit=options)
    await g.acheck(prompt=BOMB)
    await g.aflush_audits()
    nemoguard_simulator.force({"user": "safe"}, {"fault": "timeout"})  # the second audit hangs
    await g.acheck(prompt="another text")
    await asyncio.sleep(0.1)
    await g.aclose()  # no drain time: the hanging audit is dropped, counted, its record written
    first, second = _lines(path)
    assert first["think_status"] == "done" and first["think"]["reasoning"]
    assert second["think_status"] == "dropped" and second["think_dropped"] == "shutdown"
    assert g.stats()["think"]["dropped_shutdown"] == 1
