"""A bounded LRU verdict cache with a TTL, and single-flight for identical concurrent checks.

Keys are hashes of everything that can change a verdict (model, mode, kwargs, policy, texts, image bytes), so
a hit is always a verdict for exactly the same question. Errors are never cached: an outage must not outlive
itself. All state hangs off the guard instance.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def cache_key(parts: Sequence[str | bytes]) -> str:
    """A collision-resistant key over ordered parts.

    ``repr`` of the tuple quotes and escapes every part, so part boundaries cannot shift; it runs in C, which
    keeps a cache hit in the low microseconds.
    """
    return hashlib.blake2b(repr(tuple(parts)).encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    shared: int = 0  # requests that joined an identical in-flight check instead of sending their own
    evictions: int = 0
    expired: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


class VerdictCache(Generic[T]):
    """LRU with per-entry expiry. ``maxsize=0`` disables storage (single-flight still works)."""

    def __init__(
        self, maxsize: int = 4096, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()
        self._sync_inflight: dict[str, Future[T]] = {}
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
