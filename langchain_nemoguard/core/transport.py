"""HTTP transport: pooled keep-alive clients, retries, failover between endpoints, a concurrency limit.

The guard sits on the hot path of every chat turn, so the async path talks to aiohttp directly (httpx's own
async stack costs several times more per request on a small machine; see ``benchmarks/bench_transport.py``);
the sync path uses ``httpx.Client``. Callers that want their own clients (proxies, mTLS, event hooks) pass
``http_client`` / ``http_async_client`` (httpx) and those are used as given.

Retry rules, identical for sync and async (one tenacity configuration): connect errors, timeouts, 429
(honouring ``Retry-After``) and 5xx are retried with exponential backoff and jitter; other 4xx never are.
With several base URLs a failing endpoint is put in a cool-down and the next attempt goes to a healthy one
at once, without backoff.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from .errors import (
    ErrorCode,
    GuardConnectionError,
    GuardHTTPError,
    GuardTimeoutError,
    GuardUnavailableError,
)
from .simulator_mark import mark_answer

USER_AGENT = "langchain-nemoguard/0.1"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    max_retry_after: float = 10.0  # a server asking for longer than this gets this


@dataclass(slots=True)
class Endpoint:
    base_url: str
    failures: int = 0
    down_until: float = 0.0
    requests: int = 0
    errors: int = 0

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"


class EndpointPool:
    """Round-robin over healthy endpoints; failed ones cool down (doubling, capped) before being tried again."""

    def __init__(
        self, base_urls: Sequence[str], *, cooldown: float = 2.0, max_cooldown: float = 30.0
    ) -> None:
        if not base_urls:
            raise ValueError("at least one base URL is needed")
        self.endpoints = [Endpoint(u.rstrip("/")) for u in base_urls]
        self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._next = 0
        self._lock = threading.Lock()

    def pick(self) -> Endpoint:
        now = time.monotonic()
        with self._lock:
            n = len(self.endpoints)
            for i in range(n):
                ep = self.endpoints[(self._next + i) % n]
                if ep.down_until <= now:
                    self._next = (self._next + i + 1) % n
                    ep.requests += 1
                    return ep
            # everything is cooling down: try the one that comes back first rather than failing outright
            ep = min(self.endpoints, key=lambda e: e.down_until)
            ep.requests += 1
            return ep

    def has_healthy_other(self, than: Endpoint | None) -> bool:
        now = time.monotonic()
        return any(ep is not than and ep.down_until <= now for ep in self.endpoints)

    def mark_failure(self, ep: Endpoint) -> None:
        with self._lock:
            ep.failures += 1
            ep.errors += 1
            if len(self.endpoints) > 1:
                delay = min(self._cooldown * 2 ** (ep.failures - 1), self._max_cooldown)
                ep.down_until = time.monotonic() + delay

    def mark_success(self, ep: Endpoint) -> None:
        if ep.failures:
            with self._lock:
                ep.failures = 0
                ep.down_until = 0.0

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "base_url": e.base_url,
                "healthy": e.down_until <= now,
                "requests": e.requests,
                "errors": e.errors,
            }
            for e in self.endpoints
        ]


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, GuardHTTPError):
        return exc.status == 429 or (exc.status or 0) >= 500
    return isinstance(exc, (GuardTimeoutError, GuardConnectionError))


def _error_detail(body: bytes) -> str:
    """A short, safe description of an error body (never echoes request content or headers)."""
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else None
        if isinstance(msg, str):
            return msg[:300]
    except (ValueError, AttributeError):
        pass
    return body[:200].decode("utf-8", "replace")


def _decode(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    if status != 200:
        raise GuardHTTPError(
            status, _error_detail(body), retry_after=parse_retry_after(headers.get("retry-after"))
        )
    try:
        data = json.loads(body)
    except ValueError:
        raise GuardUnavailableError(ErrorCode.BAD_RESPONSE, "the response body is not JSON") from None
    if not isinstance(data, dict):
        raise GuardUnavailableError(ErrorCode.BAD_RESPONSE, "the response body is not a JSON object")
    return mark_answer(data, headers)  # the interface simulator says so in a header (core/simulator_mark.py)


@dataclass(slots=True)
class _LoopState:
    """Per-event-loop resources: aiohttp sessions and semaphores cannot cross loops."""

    semaphore: asyncio.Semaphore
    session: aiohttp.ClientSession | None = None
    closer: AsyncGenerator[None, None] | None = None


async def _close_on_loop_shutdown(state: _LoopState) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        if state.session is not None and not state.session.closed:
            await state.session.close()


class Transport:
    """POSTs JSON bodies to an OpenAI-compatible endpoint (or several) and returns decoded JSON."""

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 64,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        http_async_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.pool = EndpointPool(base_urls)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max_concurrency
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        self._headers.update(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._http_client = http_client
        self._own_http_client = http_client is None
        self._http_async_client = http_async_client
        self._sync_sem = threading.BoundedSemaphore(max_concurrency)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the Authorization header
        urls = ", ".join(e.base_url for e in self.pool.endpoints)
        return f"Transport([{urls}], timeout={self.timeout})"

    # --- retry configuration (shared) ---------------------------------------------------------------------

    def _attempts(self) -> int:
        """Total tries: 1 + max_retries, plus one per extra endpoint so failover never eats the retries."""
        return self.retry.max_retries + 1 + (len(self.pool.endpoints) - 1)

    def _delay(self, exc: BaseException | None, failures: int) -> float:
        """The pause after the n-th failure: Retry-After if given, none when another endpoint is healthy,
        else exponential backoff with jitter."""
        if isinstance(exc, GuardHTTPError) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.max_retry_after)
        if len(self.pool.endpoints) > 1 and self.pool.has_healthy_other(None):
            return 0.0
        base = min(self.retry.backoff_max, self.retry.backoff_initial * 2 ** (failures - 1))
        return base + random.uniform(0, self.retry.backoff_initial)

    def _retry_kwargs(self) -> dict[str, Any]:
        """Tenacity settings for the tries after a failed first one (which runs outside tenacity, so the
        common, successful case pays nothing for the retry machinery)."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self._delay(exc, state.attempt_number + 1)

        return {
            "stop": stop_after_attempt(self._attempts() - 1),
            "wait": wait,
            "retry": retry_if_exception(_retryable),
            "reraise": True,
        }

    def _track(self, ep: Endpoint, exc: BaseException | None) -> None:
        if exc is None:
            self.pool.mark_success(ep)
        elif _retryable(exc):
            self.pool.mark_failure(ep)

    # --- sync ----------------------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if self._http_client is None:
            with self._client_lock:
                if self._http_client is None:
                    limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=32)
                    self._http_client = httpx.Client(limits=limits, follow_redirects=False)
        return self._http_client

    def _attempt(self, path: str, body: bytes) -> dict[str, Any]:
        ep = self.pool.pick()
        try:
            try:
                r = self._client().post(
                    ep.url(path), content=body, headers=self._headers, timeout=self.timeout
                )
            except httpx.TimeoutException:
                raise GuardTimeoutError(f"no answer from {ep.base_url} within {self.timeout:g}s") from None
            except httpx.TransportError as exc:
                raise GuardConnectionError(f"{ep.base_url}: {type(exc).__name__}") from None
            result = _decode(r.status_code, r.headers, r.content)
        except GuardUnavailableError as exc:
            self._track(ep, exc)
            raise
        self._track(ep, None)
        return result

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        with self._sync_sem:
            try:
                return self._attempt(path, body)  # the common case stays off the retry machinery
            except GuardUnavailableError as exc:
                if not _retryable(exc) or self._attempts() == 1:
                    raise
                time.sleep(self._delay(exc, 1))
            for attempt in Retrying(**self._retry_kwargs()):
                with attempt:
                    return self._attempt(path, body)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def close(self) -> None:
        if self._http_client is not None and self._own_http_client:
            self._http_client.close()
            self._http_client = None

    # --- async ---------------------------------------------------------------------------------------------

    def loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = _LoopState(asyncio.Semaphore(self.max_concurrency))
            self._loops[loop] = state
        return state

    async def _session(self, state: _LoopState) -> aiohttp.ClientSession:
        if state.session is None or state.session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_concurrency, keepalive_timeout=30, ttl_dns_cache=300
            )
            state.session = aiohttp.ClientSession(connector=connector, headers=self._headers)
            # asyncio.run() (and pytest's loops) call loop.shutdown_asyncgens() before closing the loop: a primed
            # async generator's `finally` is the one hook that closes the session cleanly when a caller never
            # calls aclose(), e.g. `asyncio.run(guard.acheck(...))` in a script.
            state.closer = _close_on_loop_shutdown(state)
            await anext(state.closer)
        return state.session

    async def _aattempt(self, state: _LoopState, path: str, body: bytes) -> dict[str, Any]:
        ep = self.pool.pick()
        try:
            if self._http_async_client is not None:
                result = await self._ahttpx(ep, path, body)
            else:
                result = await self._aiohttp(state, ep, path, body)
        except GuardUnavailableError as exc:
            self._track(ep, exc)
            raise
        self._track(ep, None)
        return result

    async def _aiohttp(self, state: _LoopState, ep: Endpoint, path: str, body: bytes) -> dict[str, Any]:
        session = await self._session(state)
        try:
            async with asyncio.timeout(self.timeout):
                async with session.post(ep.url(path), data=body) as r:
                    raw = await r.read()
                    status, headers = r.status, r.headers
        except TimeoutError:
            raise GuardTimeoutError(f"no answer from {ep.base_url} within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise GuardConnectionError(f"{ep.base_url}: {type(exc).__name__}") from None
        return _decode(status, {k.lower(): v for k, v in headers.items()}, raw)

    async def _ahttpx(self, ep: Endpoint, path: str, body: bytes) -> dict[str, Any]:
        assert self._http_async_client is not None
        try:
            r = await self._http_async_client.post(
                ep.url(path), content=body, headers=self._headers, timeout=self.timeout
            )
        except httpx.TimeoutException:
            raise GuardTimeoutError(f"no answer from {ep.base_url} within {self.timeout:g}s") from None
        except httpx.TransportError as exc:
            raise GuardConnectionError(f"{ep.base_url}: {type(exc).__name__}") from None
        return _decode(r.status_code, r.headers, r.content)

    async def apost(self, path: str, body: bytes) -> dict[str, Any]:
        state = self.loop_state()
        async with state.semaphore:
            try:
                return await self._aattempt(state, path, body)
            except GuardUnavailableError as exc:
                if not _retryable(exc) or self._attempts() == 1:
                    raise
                await asyncio.sleep(self._delay(exc, 1))
            async for attempt in AsyncRetrying(**self._retry_kwargs()):
                with attempt:
                    return await self._aattempt(state, path, body)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def aclose(self) -> None:
        try:
            state = self._loops.get(asyncio.get_running_loop())
        except RuntimeError:
            state = None
        if state is not None and state.session is not None:
            await state.session.close()
            state.session = None
        self.close()
