"""The verdict cache, in one place: keys, a bounded LRU with a TTL, and single-flight, sync and async.

Keys are hashes of everything that can change a verdict (model, mode, kwargs, policy, texts, the prepared image
bytes), so a hit is always a verdict for exactly the same question. Errors are never cached: an outage must not
outlive itself. Single-flight: identical checks that run at the same time share one computation (threads share a
``concurrent.futures.Future``; tasks on one event loop share an ``asyncio.Future``, kept per loop because
futures cannot cross loops). All state hangs off the guard's cache instance.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from .conversation import Conversation
    from .images import PreparedImage
    from .policy import Policy

T = TypeVar("T")


def cache_key(parts: Sequence[str | bytes]) -> str:
    """A collision-resistant key over ordered parts.

    ``repr`` of the tuple quotes and escapes every part, so part boundaries cannot shift; it runs in C, which
    keeps a cache hit in the low microseconds.
    """
    return hashlib.blake2b(repr(tuple(parts)).encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def verdict_key(
    conv: Conversation,
    policy: Policy,
    mode: str,
    images: Sequence[PreparedImage] = (),
    *,
    format_name: str,
    model: str,
    max_tokens: int | None,
    constrain_output: bool,
    context_turns: int,
) -> str:
    """The cache key of one check: every input that can change its verdict or its action.

    Images count by what the model is shown: ``images`` are ``conv.images`` prepared (decoded, converted,
    resized; a remote one fetched), keyed by the digest of those bytes, never by a path, a size or an mtime.
    """
    parts: list[str | bytes] = [
        format_name,
        model,
        mode,
        str(max_tokens),
        str(constrain_output),
        policy.fingerprint,
        conv.prompt,
        "\x00" if conv.response is None else "\x01" + conv.response,
    ]
    if context_turns:
        parts += [f"{t.role}:{t.text}" for t in conv.history[-context_turns:]]
    parts += [img.digest for img in images]  # what the model sees: prepared bytes, fetched content
    return cache_key(parts)


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    shared: int = 0  # requests that joined an identical in-flight check instead of sending their own
    evictions: int = 0
    expired: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class VerdictCache(Generic[T]):
    """LRU with per-entry expiry. ``maxsize=0`` disables storage (single-flight still works).

    Args:
        maxsize: Entries kept (least recently used go first); 0 stores nothing.
        ttl: Seconds an entry lives.
        clock: A monotonic clock (injectable for tests).
    """

    def __init__(
        self, maxsize: int = 4096, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()
        self._sync_inflight: dict[str, Future[T]] = {}
        self._async_inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[T]]
        ] = weakref.WeakKeyDictionary()
        self.stats = CacheStats()

    def get(self, key: str) -> T | None:
        if self.maxsize <= 0:
            return None
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.stats.misses += 1
                return None
            expires, value = item
            if expires < self._clock():
                del self._data[key]
                self.stats.expired += 1
                self.stats.misses += 1
                return None
            self._data.move_to_end(key)
            self.stats.hits += 1
            return value

    def put(self, key: str, value: T) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = (self._clock() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    # --- sync single-flight: the first caller computes, the others wait on its future ---------------------

    def sync_single_flight(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, shared with every thread that asks for ``key`` while it runs."""
        with self._lock:
            fut = self._sync_inflight.get(key)
            leader = fut is None
            if leader:
                fut = Future()
                self._sync_inflight[key] = fut
            else:
                self.stats.shared += 1
        assert fut is not None
        if not leader:
            return fut.result()
        try:
            value = compute()
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(value)
            return value
        finally:
            with self._lock:
                self._sync_inflight.pop(key, None)

    # --- async single-flight: the first task computes, the others on its loop await its future ---------------

    async def async_single_flight(self, key: str, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``await compute()``, shared with every task on this loop that asks for ``key`` while it runs.

        Returns the value and whether it was shared (computed by another task). A follower whose leader is
        cancelled computes for itself; a follower that is itself cancelled leaves the leader running.
        """
        loop = asyncio.get_running_loop()
        inflight = self._async_inflight.get(loop)
        if inflight is None:
            inflight = self._async_inflight.setdefault(loop, {})
        while True:
            shared = inflight.get(key)
            if shared is None:
                break
            self.stats.shared += 1
            try:
                return await asyncio.shield(shared), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # the leader was cancelled, not us: ask ourselves
        fut: asyncio.Future[T] = loop.create_future()
        inflight[key] = fut
        try:
            value = await compute()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: followers re-raise it themselves
            raise
        finally:
            inflight.pop(key, None)
        fut.set_result(value)
        return value, False
