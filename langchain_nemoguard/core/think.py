"""Background THINK audits: the fast verdict decides; the same input is judged again in THINK mode, for the record.

``AuditOptions(think=True)``: after each decided check that went to the model (not a cache hit, not an outage,
not itself in THINK mode) the check is queued for a THINK-mode re-judgement. The trace and the THINK verdict
go into the check's audit record (:mod:`.audit`); a THINK verdict whose safe/unsafe differs from the deciding
one is flagged (``disagrees``) and counted.

It never slows the decisions:

* the queue is bounded (``think_queue``); when it is full the **oldest** queued audit is dropped and counted,
  so a burst keeps the most recent traffic audited and memory stays fixed;
* audits run with their own concurrency (``think_concurrency`` workers), so they hold at most that many of the
  transport's connections, whatever the decision traffic;
* a check returns as soon as its verdict is decided; queueing is O(1) under a lock.

Sync checks are audited by worker threads that exist only while there is work (a worker exits when the queue
is empty), so an idle guard holds no thread and none outlives ``close()``. Async checks are audited by tasks on
the checking event loop, one queue per loop. ``close()`` / ``aclose()`` wait up to ``think_drain_s`` for the
queue to drain, then drop what is left, counted, each record still written (without its audit); the audits
already running get ``RUNNING_GRACE_S`` more to finish.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .telemetry import CheckRecord, ThinkAudit

if TYPE_CHECKING:
    from .conversation import Conversation
    from .images import PreparedImage
    from .policy import Policy
    from .verdict import Verdict

logger = logging.getLogger("langchain_nemoguard")
RUNNING_GRACE_S = 2.0  # what close() gives the audits already running, after the drain time


@dataclass(frozen=True, slots=True)
class ThinkJob:
    """One queued audit: the decided check and what to judge again."""

    record: CheckRecord
    conversation: Conversation = field(repr=False)
    policy: Policy = field(repr=False)
    stage: str | None = None  # the stage the deciding verdict was narrowed to (the THINK verdict is too)
    images: tuple[PreparedImage, ...] = field(default=(), repr=False)  # prepared for the decision, reused


@dataclass(slots=True)
class ThinkStats:
    """Counters of one guard's THINK audits."""

    queued: int = 0
    done: int = 0
    disagreements: int = 0
    dropped_overflow: int = 0
    dropped_shutdown: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "done": self.done,
            "disagreements": self.disagreements,
            "dropped_overflow": self.dropped_overflow,
            "dropped_shutdown": self.dropped_shutdown,
            "failed": self.failed,
        }


@dataclass(slots=True)
class _LoopQueue:
    jobs: deque[ThinkJob] = field(default_factory=deque)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class ThinkAuditor:
    """The bounded queue and workers of one guard (see the module docstring).

    Args:
        run_sync: Judges a job in THINK mode on the calling thread; returns the verdict narrowed to its stage.
        run_async: The same on the running event loop.
        deliver: Called with the record once its audit is in (``think_status="done"``).
        drop: Called with a record whose audit was dropped, and why (``overflow``, ``shutdown``, ``error``).
        queue_size: Queued audits at most, per event loop and for sync checks.
        concurrency: Audits running at once, per event loop and for sync checks.
    """

    def __init__(
        self,
        *,
        run_sync: Callable[[ThinkJob], Verdict],
        run_async: Callable[[ThinkJob], Awaitable[Verdict]],
        deliver: Callable[[CheckRecord], None],
        drop: Callable[[CheckRecord, str], None],
        queue_size: int,
        concurrency: int,
    ) -> None:
        self._run_sync = run_sync
        self._run_async = run_async
        self._deliver = deliver
        self._drop_cb = drop
        self.queue_size = queue_size
        self.concurrency = concurrency
        self.stats = ThinkStats()
        self._cond = threading.Condition()
        self._jobs: deque[ThinkJob] = deque()
        self._threads: set[threading.Thread] = set()
        self._running = 0
        self._closed = False
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = weakref.WeakKeyDictionary()

    @property
    def pending(self) -> int:
        """Audits queued or running (sync workers and the current event loop's)."""
        with self._cond:
            n = len(self._jobs) + self._running
        try:
            q = self._loops.get(asyncio.get_running_loop())
        except RuntimeError:
            q = None
        return n + (len(q.jobs) + len(q.tasks) if q is not None else 0)

    # --- shared --------------------------------------------------------------------------------------------

    def _judge(self, job: ThinkJob, verdict: Verdict, started: float) -> None:
        deciding = job.record.verdict
        disagrees = verdict.error is None and deciding.error is None and verdict.safe != deciding.safe
        audit = ThinkAudit(verdict, disagrees, (time.perf_counter() - started) * 1e3)
        with self._cond:
            self.stats.done += 1
            self.stats.disagreements += disagrees
        if disagrees:
            logger.debug("nemoguard: THINK audit disagrees with the decision of record %s", job.record.id)
        self._deliver(replace(job.record, think=audit, think_status="done"))

    def _drop(self, job: ThinkJob, reason: str) -> None:
        with self._cond:
            if reason == "overflow":
                self.stats.dropped_overflow += 1
            elif reason == "shutdown":
                self.stats.dropped_shutdown += 1
            else:
                self.stats.failed += 1
        self._drop_cb(replace(job.record, think_status="dropped", dropped_reason=reason), reason)

    def _enqueue(self, jobs: deque[ThinkJob], job: ThinkJob) -> ThinkJob | None:
        """Append ``job`` (caller holds the lock); return the oldest job when it had to make room."""
        oldest = jobs.popleft() if len(jobs) >= self.queue_size else None
        jobs.append(job)
        self.stats.queued += 1
        return oldest

    # --- sync checks: worker threads that exist while there is work ----------------------------------------

    def submit_sync(self, job: ThinkJob) -> None:
        """Queue ``job`` for a worker thread (started when fewer than ``concurrency`` are running)."""
        with self._cond:
            if self._closed:
                oldest, job_dropped = None, job
            else:
                oldest, job_dropped = self._enqueue(self._jobs, job), None
                if len(self._threads) < self.concurrency:
                    t = threading.Thread(target=self._worker, name="nemoguard-think", daemon=True)
                    self._threads.add(t)
                    t.start()
        if oldest is not None:
            self._drop(oldest, "overflow")
        if job_dropped is not None:
            self._drop(job_dropped, "shutdown")

    def _worker(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                if not self._jobs or self._closed:
                    self._threads.discard(me)
                    self._cond.notify_all()
                    return
                job = self._jobs.popleft()
                self._running += 1
            try:
                started = time.perf_counter()
                try:
                    verdict = self._run_sync(job)
                except Exception:
                    logger.exception("nemoguard: a THINK audit failed")
                    self._drop(job, "error")
                else:
                    self._judge(job, verdict, started)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sync queue is empty and no sync audit runs; False when ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and self._running == 0, timeout)

    def close(self, drain_s: float) -> int:
        """Stop the sync side: wait up to ``drain_s`` for the queue to drain, drop the rest (returned, counted)."""
        deadline = time.monotonic() + max(0.0, drain_s)
        self.flush(drain_s)
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            threads = list(self._threads)
        for job in left:
            self._drop(job, "shutdown")
        for t in threads:  # each finishes the audit it is running, then exits
            t.join(max(0.0, deadline - time.monotonic()) + RUNNING_GRACE_S)
        return len(left)

    # --- async checks: tasks on the checking loop ----------------------------------------------------------

    def _loop_queue(self) -> _LoopQueue:
        loop = asyncio.get_running_loop()
        q = self._loops.get(loop)
        if q is None:
            q = self._loops[loop] = _LoopQueue()
        return q

    def submit_async(self, job: ThinkJob) -> None:
        """Queue ``job`` on the running loop (a worker task starts when fewer than ``concurrency`` run)."""
        if self._closed:
            self._drop(job, "shutdown")
            return
        q = self._loop_queue()
        with self._cond:
            oldest = self._enqueue(q.jobs, job)
        if len(q.tasks) < self.concurrency:
            task = asyncio.get_running_loop().create_task(self._aworker(q), name="nemoguard-think")
            q.tasks.add(task)
            task.add_done_callback(q.tasks.discard)
        if oldest is not None:
            self._drop(oldest, "overflow")

    async def _aworker(self, q: _LoopQueue) -> None:
        while q.jobs and not self._closed:
            job = q.jobs.popleft()
            started = time.perf_counter()
            try:
                verdict = await self._run_async(job)
            except asyncio.CancelledError:
                self._drop(job, "shutdown")
                raise
            except Exception:
                logger.exception("nemoguard: a THINK audit failed")
                self._drop(job, "error")
            else:
                self._judge(job, verdict, started)

    async def aflush(self) -> None:
        """Wait until this loop's queue is empty and its audits are done."""
        q = self._loops.get(asyncio.get_running_loop())
        while q is not None and q.tasks:
            await asyncio.gather(*list(q.tasks), return_exceptions=True)

    async def aclose(self, drain_s: float) -> int:
        """Stop this loop's side: drain for up to ``drain_s``, then cancel and drop the rest; returns how many
        audits were dropped."""
        q = self._loops.get(asyncio.get_running_loop())
        if q is None:
            return 0
        before = self.stats.dropped_shutdown
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, drain_s)
        while q.tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(list(q.tasks), timeout=remaining)  # wait() cancels nothing
        left = list(q.jobs)
        q.jobs.clear()
        running = list(q.tasks)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        for job in left:
            self._drop(job, "shutdown")
        return self.stats.dropped_shutdown - before


__all__ = ["ThinkAuditor", "ThinkJob", "ThinkStats"]
