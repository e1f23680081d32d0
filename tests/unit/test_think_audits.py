"""The background THINK audit queue (core/think.py) with scripted runners: bounded, drop-oldest, its own
concurrency, no lingering threads, shutdown that drains or drops with a count."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from langchain_nemoguard import Verdict
from langchain_nemoguard.core.conversation import Conversation
from langchain_nemoguard.core.policy import Policy
from langchain_nemoguard.core.telemetry import CheckInfo, CheckRecord
from langchain_nemoguard.core.think import ThinkAuditor, ThinkJob

SAFE = Verdict(user_safe=True, mode="think", reasoning="fine")
UNSAFE = Verdict(user_safe=False, safe=False, categories=("Violence",), mode="think", reasoning="a weapon")


def job(i: int, deciding: Verdict = SAFE) -> ThinkJob:
    conv = Conversation(prompt=f"text {i}")
    info = CheckInfo("input", "library", f"req-{i}", "default", "fp", "fast", "m", "vllm", conv)
    record = CheckRecord.new(info, deciding, think_status="pending")
    return ThinkJob(record, conv, Policy())


class Rig:
    """An auditor whose THINK runs block until released, and what it delivered and dropped."""

    def __init__(self, *, queue: int = 2, concurrency: int = 1, verdict: Verdict = SAFE) -> None:
        self.release = threading.Event()
        self.arelease: asyncio.Event | None = None
        self.started: list[str] = []
        self.delivered: list[CheckRecord] = []
        self.dropped: list[tuple[str, str]] = []
        self.verdict = verdict
        self.auditor = ThinkAuditor(
            run_sync=self._run,
            run_async=self._arun,
            deliver=self.delivered.append,
            drop=lambda r, why: self.dropped.append((r.info.request_id or "", why)),
            queue_size=queue,
            concurrency=concurrency,
        )

    def _run(self, j: ThinkJob) -> Verdict:
        self.started.append(j.record.info.request_id or "")
        assert self.release.wait(10)
        return self.verdict

    async def _arun(self, j: ThinkJob) -> Verdict:
        self.started.append(j.record.info.request_id or "")
        assert self.arelease is not None
        await self.arelease.wait()
        return self.verdict


def wait_until(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def think_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nemoguard-think"]


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    rig = Rig(queue=2, concurrency=1)
    rig.auditor.submit_sync(job(1))
    wait_until(lambda: rig.started == ["req-1"])  # the worker holds job 1; the queue is empty
    for i in (2, 3, 4, 5):
        rig.auditor.submit_sync(job(i))
    assert rig.dropped == [("req-2", "overflow"), ("req-3", "overflow")]
    assert rig.auditor.stats.dropped_overflow == 2
    rig.release.set()
    assert rig.auditor.flush(5)
    assert [r.info.request_id for r in rig.delivered] == ["req-1", "req-4", "req-5"]
    assert all(r.think_status == "done" and r.think is not None for r in rig.delivered)


def test_audits_run_with_their_own_concurrency_and_never_block_the_submitter() -> None:
    rig = Rig(queue=10, concurrency=2)
    t0 = time.perf_counter()
    for i in range(6):
        rig.auditor.submit_sync(job(i))
    assert time.perf_counter() - t0 < 0.5  # submitting never waits for an audit
    wait_until(lambda: len(rig.started) == 2)
    time.sleep(0.05)
    assert len(rig.started) == 2 and len(think_threads()) == 2  # two at a time, no more
    rig.release.set()
    assert rig.auditor.flush(5)
    assert len(rig.delivered) == 6


def test_no_thread_outlives_the_work() -> None:
    rig = Rig(queue=10, concurrency=3)
    rig.release.set()
    for i in range(5):
        rig.auditor.submit_sync(job(i))
    assert rig.auditor.flush(5)
    wait_until(lambda: not think_threads())


def test_disagreement_is_flagged_and_counted() -> None:
    rig = Rig(verdict=UNSAFE)
    rig.release.set()
    rig.auditor.submit_sync(job(1, deciding=SAFE))
    rig.auditor.submit_sync(job(2, deciding=UNSAFE.replace(mode="fast", reasoning=None)))
    assert rig.auditor.flush(5)
    by_id = {r.info.request_id: r.think for r in rig.delivered}
    assert by_id["req-1"] is not None and by_id["req-1"].disagrees
    assert by_id["req-2"] is not None and not by_id["req-2"].disagrees
    assert by_id["req-1"].verdict.reasoning == "a weapon"
    assert rig.auditor.stats.disagreements == 1


def test_an_outage_never_counts_as_a_disagreement() -> None:
    from langchain_nemoguard.core.errors import ErrorCode

    rig = Rig(verdict=Verdict(user_safe=None, safe=False, error=ErrorCode.TIMEOUT))
    rig.release.set()
    rig.auditor.submit_sync(job(1))
    assert rig.auditor.flush(5)
    think = rig.delivered[0].think
    assert think is not None and not think.disagrees and rig.auditor.stats.disagreements == 0


def test_shutdown_drops_what_is_left_with_a_count() -> None:
    rig = Rig(queue=10, concurrency=1)
    for i in range(4):
        rig.auditor.submit_sync(job(i))
    wait_until(lambda: rig.started == ["req-0"])
    threading.Timer(0.2, rig.release.set).start()  # the running audit finishes after close() dropped the rest
    assert rig.auditor.close(drain_s=0.0) == 3
    assert sorted(rig.dropped) == [("req-1", "shutdown"), ("req-2", "shutdown"), ("req-3", "shutdown")]
    assert [r.info.request_id for r in rig.delivered] == ["req-0"]
    rig.auditor.submit_sync(job(9))  # after close: dropped at once, never queued
    assert rig.dropped[-1] == ("req-9", "shutdown") and rig.auditor.stats.dropped_shutdown == 4
    assert not think_threads()


def test_shutdown_drains_within_its_time() -> None:
    rig = Rig(queue=10, concurrency=1)
    rig.release.set()
    for i in range(3):
        rig.auditor.submit_sync(job(i))
    assert rig.auditor.close(drain_s=5.0) == 0
    assert len(rig.delivered) == 3 and rig.dropped == []


async def test_async_queue_drops_the_oldest_and_drains() -> None:
    rig = Rig(queue=2, concurrency=1)
    rig.arelease = asyncio.Event()
    for i in range(5):  # queued synchronously: the worker task only runs at the next await
        rig.auditor.submit_async(job(i))
    assert rig.dropped == [("req-0", "overflow"), ("req-1", "overflow"), ("req-2", "overflow")]
    await asyncio.sleep(0.01)
    assert rig.started == ["req-3"]
    rig.arelease.set()
    await rig.auditor.aflush()
    assert [r.info.request_id for r in rig.delivered] == ["req-3", "req-4"]
    assert rig.auditor.stats.dropped_overflow == 3 and rig.auditor.stats.done == 2


async def test_async_shutdown_cancels_and_counts() -> None:
    rig = Rig(queue=10, concurrency=1)
    rig.arelease = asyncio.Event()  # never set: every audit hangs
    for i in range(3):
        rig.auditor.submit_async(job(i))
    await asyncio.sleep(0.01)
    assert await rig.auditor.aclose(drain_s=0.05) == 3
    assert {why for _, why in rig.dropped} == {"shutdown"} and len(rig.dropped) == 3
    assert rig.delivered == []


@pytest.mark.parametrize("bad", [{"think_queue": 0}, {"think_concurrency": 0}, {"think_drain_s": -1.0}])
def test_audit_options_are_checked(bad: dict[str, object]) -> None:
    from langchain_nemoguard import AuditOptions, ConfigurationError

    with pytest.raises(ConfigurationError):
        AuditOptions(**bad)  # type: ignore[arg-type]
