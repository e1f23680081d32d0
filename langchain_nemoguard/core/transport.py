"""HTTP transport: pooled keep-alive clients, retries, failover between endpoints, a concurrency limit, and the
bounds every check lives within.

The guard sits on the hot path of every chat turn, so the async path talks to aiohttp directly (httpx's own
async stack costs several times more per request on a small machine; see ``benchmarks/bench_client.py``);
the sync path uses ``httpx.Client``. Callers that want their own clients (proxies, mTLS, event hooks) pass
``http_client`` / ``http_async_client`` (httpx) and those are used as given.

Retry rules, identical for sync and async (one tenacity configuration): connect errors, timeouts, 429
(honouring ``Retry-After``) and 5xx are retried with exponential backoff and jitter; other 4xx never are.
With several base URLs a failing endpoint is put in a cool-down and the next attempt goes to a healthy one
at once, without backoff.

Bounds, identical for sync and async (an endpoint that misbehaves must not hold or flood the caller):

* **one deadline per check**: no attempt, retry, backoff or wait for a connection runs past it. Each attempt
  also ends ``timeout`` after it starts. Async: ``asyncio.timeout``. Sync: the built-in client's sockets clamp
  every connect, read and write to the deadline, so a server that trickles a byte a second (headers or body),
  stalls after the headers or never answers is cut off on time. (A caller's own ``http_client``, or the
  built-in one when proxy variables are set, is held to the deadline between reads instead: each read waits at
  most the time left, and the check stops at the first read after the deadline.)
* **bounded bodies**: an answer over ``max_response_bytes`` (after gzip/deflate decoding, checked as it arrives)
  is refused without being buffered; an error body is read no further than 64 KB.
* **no redirects**: a 3xx is refused, on both paths (its target is never shown: it may name internal hosts).
* **no secrets echoed**: an error body quoting the API key (or any credential header) is redacted before it
  reaches an exception, a log line or a ``Verdict``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import threading
import time
import urllib.request
import weakref
import zlib
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import httpcore
import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
)
from tenacity.stop import stop_base

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


DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
ERROR_BODY_BYTES: Final = 64 * 1024  # an error body is read this far and no further: only its message is used
_CHUNK: Final = 64 * 1024
_SECRET_HEADER: Final = re.compile(r"auth|key|token|secret|cookie|passw", re.IGNORECASE)
_SECRET_RUN: Final = re.compile(r"[A-Za-z0-9_\-.+/=~]{6,}")
_MIN_SECRET: Final = 8
REDACTED: Final = "[redacted]"


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret, and every run of 6+ characters cut from one (``sk-proj-abc...``), replaced."""
    if not secrets:
        return text
    for secret in secrets:
        text = text.replace(secret, REDACTED)

    def hide(m: re.Match[str]) -> str:
        run = m.group(0)
        return REDACTED if any(run in secret for secret in secrets) else run

    return _SECRET_RUN.sub(hide, text)


def _error_detail(body: bytes, secrets: Sequence[str] = ()) -> str:
    """A short, safe description of an error body (never echoes request content, headers or credentials)."""
    detail: str | None = None
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else None
        if isinstance(msg, str):
            detail = msg[:300]
    except (ValueError, AttributeError, RecursionError):
        pass
    if detail is None:
        detail = body[:200].decode("utf-8", "replace")
    return redact(detail, secrets)


def _decode(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Sequence[str] = ()
) -> dict[str, Any]:
    if 300 <= status < 400:
        # not followed, and its Location is not shown: it may name a host the caller must not learn about
        raise GuardHTTPError(status, "the endpoint answered with a redirect; redirects are refused")
    if status != 200:
        raise GuardHTTPError(
            status, _error_detail(body, secrets), retry_after=parse_retry_after(headers.get("retry-after"))
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise GuardUnavailableError(ErrorCode.BAD_RESPONSE, "the response body is not JSON") from None
    if not isinstance(data, dict):
        raise GuardUnavailableError(ErrorCode.BAD_RESPONSE, "the response body is not a JSON object")
    return mark_answer(data, headers)  # the interface simulator says so in a header (core/simulator_mark.py)


class _OutOfTime(stop_base):
    """Stop retrying when the next pause would reach the check's deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self.deadline


class _Body:
    """A response body read as it arrives: decoded (gzip, deflate) with bounded output, refused past ``limit``
    (or, for an error body, silently cut there). Memory never exceeds the limit plus one chunk."""

    __slots__ = ("_cut", "_limit", "_parts", "_size", "_z", "done")

    def __init__(self, limit: int, encoding: str, declared: int | None, *, cut: bool = False) -> None:
        self._limit = limit
        self._cut = cut
        self._parts: list[bytes] = []
        self._size = 0
        self.done = False
        enc = encoding.strip().lower()
        if enc in ("", "identity"):
            self._z: Any = None
        elif enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise GuardUnavailableError(
                ErrorCode.BAD_RESPONSE, f"the response uses content encoding {enc[:20]!r}, which is refused"
            )
        if not cut and self._z is None and declared is not None and declared > limit:
            raise self._too_large()

    def _too_large(self) -> GuardUnavailableError:
        return GuardUnavailableError(
            ErrorCode.BAD_RESPONSE,
            f"the response body is over the {self._limit:,}-byte limit (max_response_bytes); refused unread",
        )

    def feed(self, chunk: bytes) -> None:
        if self.done or not chunk:
            return
        room = self._limit - self._size
        if self._z is not None:
            try:
                data = self._z.decompress(chunk, room + 1)
            except zlib.error:
                raise GuardUnavailableError(ErrorCode.BAD_RESPONSE, "the response body is corrupt") from None
        else:
            data = chunk
        if len(data) > room or (self._z is not None and self._z.unconsumed_tail):
            if not self._cut:
                raise self._too_large()
            data = data[:room]
            self.done = True
        self._size += len(data)
        self._parts.append(data)

    def value(self) -> bytes:
        return b"".join(self._parts)


# --- sync sockets held to the deadline ---------------------------------------------------------------------


class _Clock:
    """The deadline of the request the current thread is sending (sync path; one request per thread)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def set(self, deadline: float | None) -> None:
        self._local.deadline = deadline

    def clamp(self, timeout: float | None, expired: type[Exception]) -> float | None:
        deadline: float | None = getattr(self._local, "deadline", None)
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise expired("the check's deadline has passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, clock: _Clock) -> None:
        self._inner = inner
        self._clock = clock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._clock.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._clock.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, self._clock.clamp(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._clock)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, clock: _Clock) -> None:
        self._inner = httpcore.SyncBackend()
        self._clock = clock

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        t = self._clock.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, t, local_address, socket_options), self._clock
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        t = self._clock.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, t, socket_options), self._clock)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's exceptions as httpx's, most specific first (the pool below is used through httpx.Client)
_HTTPCORE_TO_HTTPX: Final[tuple[tuple[type[Exception], type[Exception]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


def _as_httpx(exc: Exception) -> Exception:
    for core, mapped in _HTTPCORE_TO_HTTPX:
        if isinstance(exc, core):
            return mapped(str(exc))
    return exc


class _DeadlineResponseStream(httpx.SyncByteStream):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except Exception as exc:
            raise _as_httpx(exc) from exc

    def close(self) -> None:
        self._inner.close()


class _DeadlineTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore pool whose sockets are held to the calling thread's deadline."""

    def __init__(self, clock: _Clock, *, max_connections: int, max_keepalive: int) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(clock),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            resp = self._pool.handle_request(core)
        except Exception as exc:
            raise _as_httpx(exc) from exc
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=_DeadlineResponseStream(resp.stream),
            extensions=resp.extensions,
        )

    def close(self) -> None:
        self._pool.close()


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
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.pool = EndpointPool(base_urls)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max_concurrency
        # one full timeout per try (retries, plus one failover try per extra endpoint): what a check may take
        self.deadline = deadline if deadline is not None else timeout * self._attempts()
        self.max_response_bytes = max_response_bytes
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",  # decoded here, with bounded output
            "User-Agent": USER_AGENT,
        }
        self._headers.update(headers or {})
        secrets = [v for k, v in (headers or {}).items() if _SECRET_HEADER.search(k)]
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
            secrets.append(api_key)
        parts = [p for s in secrets for p in (s, s.split(" ", 1)[-1])]
        self._secrets = tuple(dict.fromkeys(p for p in parts if len(p) >= _MIN_SECRET))
        self._http_client = http_client
        self._own_http_client = http_client is None
        self._http_async_client = http_async_client
        self._clock = _Clock()
        self._sync_sem = threading.BoundedSemaphore(max_concurrency)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._client_lock = threading.Lock()
        self._sockets_clamped = False

    def __repr__(self) -> str:  # never shows the Authorization header
        urls = ", ".join(e.base_url for e in self.pool.endpoints)
        return f"Transport([{urls}], timeout={self.timeout})"

    def deadline_from_now(self) -> float:
        """The absolute (monotonic) deadline of a check that starts now."""
        return time.monotonic() + self.deadline

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
        base = min(self.retry.backoff_max, self.retry.backoff_initial * 2.0 ** (failures - 1))
        return base + random.uniform(0, self.retry.backoff_initial)

    def _retry_kwargs(self, deadline: float) -> dict[str, Any]:
        """Tenacity settings for the tries after a failed first one (which runs outside tenacity, so the
        common, successful case pays nothing for the retry machinery). A retry whose pause would reach the
        deadline is not made: the last error is raised instead."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self._delay(exc, state.attempt_number + 1)

        return {
            "stop": stop_any(stop_after_attempt(self._attempts() - 1), _OutOfTime(deadline)),
            "wait": wait,
            "retry": retry_if_exception(_retryable),
            "reraise": True,
        }

    def _track(self, ep: Endpoint, exc: BaseException | None) -> None:
        if exc is None:
            self.pool.mark_success(ep)
        elif _retryable(exc):
            self.pool.mark_failure(ep)

    def _out_of_time(self, ep: Endpoint | None = None) -> GuardTimeoutError:
        where = f" from {ep.base_url}" if ep is not None else ""
        return GuardTimeoutError(f"no verdict{where} within the check's {self.deadline:g}s deadline")

    def _timed_out(self, ep: Endpoint, deadline: float, attempt_deadline: float) -> GuardTimeoutError:
        if attempt_deadline >= deadline:
            return self._out_of_time(ep)
        return GuardTimeoutError(f"no answer from {ep.base_url} within {self.timeout:g}s")

    def _body_limit(self, status: int) -> tuple[int, bool]:
        return (self.max_response_bytes, False) if status == 200 else (ERROR_BODY_BYTES, True)

    def _reader(self, r: httpx.Response) -> _Body:
        limit, cut = self._body_limit(r.status_code)
        if r.is_stream_consumed:  # already decoded by httpx
            return _Body(limit, "", len(r.content), cut=cut)
        declared = r.headers.get("content-length", "")
        length = int(declared) if declared.isdigit() else None
        return _Body(limit, r.headers.get("content-encoding", ""), length, cut=cut)

    # --- sync ----------------------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if self._http_client is None:
            with self._client_lock:
                if self._http_client is None:
                    proxies = urllib.request.getproxies()
                    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
                        # proxy variables are set: let httpx route by them (its own transports; the deadline is
                        # then kept between reads, see the module docstring)
                        limits = httpx.Limits(
                            max_connections=self.max_concurrency, max_keepalive_connections=32
                        )
                        self._http_client = httpx.Client(limits=limits, follow_redirects=False)
                    else:
                        transport = _DeadlineTransport(
                            self._clock, max_connections=self.max_concurrency, max_keepalive=32
                        )
                        self._http_client = httpx.Client(transport=transport, follow_redirects=False)
                        self._sockets_clamped = True
        return self._http_client

    def _send(self, ep: Endpoint, path: str, body: bytes, attempt_deadline: float) -> tuple[int, Any, bytes]:
        client = self._client()
        left = attempt_deadline - time.monotonic()
        request = client.build_request(
            "POST", ep.url(path), content=body, headers=self._headers, timeout=min(self.timeout, left)
        )
        self._clock.set(attempt_deadline if self._sockets_clamped else None)
        try:
            r = client.send(request, stream=True, follow_redirects=False)
            try:
                reader = self._reader(r)
                if r.is_stream_consumed:  # a transport that read the body itself (e.g. httpx.MockTransport)
                    reader.feed(r.content)
                else:
                    for chunk in r.iter_raw():
                        reader.feed(chunk)
                        if reader.done:
                            break
                        if time.monotonic() > attempt_deadline:
                            raise httpx.ReadTimeout("the check's deadline passed while reading the body")
                return r.status_code, r.headers, reader.value()
            finally:
                r.close()
        finally:
            self._clock.set(None)

    def _attempt(self, path: str, body: bytes, deadline: float) -> dict[str, Any]:
        now = time.monotonic()
        if now >= deadline:
            raise self._out_of_time()
        attempt_deadline = min(deadline, now + self.timeout)
        ep = self.pool.pick()
        try:
            try:
                status, headers, raw = self._send(ep, path, body, attempt_deadline)
            except httpx.TimeoutException:
                raise self._timed_out(ep, deadline, attempt_deadline) from None
            except httpx.TransportError as exc:
                raise GuardConnectionError(f"{ep.base_url}: {type(exc).__name__}") from None
            result = _decode(status, headers, raw, self._secrets)
        except GuardUnavailableError as exc:
            self._track(ep, exc)
            raise
        self._track(ep, None)
        return result

    def post(self, path: str, body: bytes, *, deadline: float | None = None) -> dict[str, Any]:
        deadline = self.deadline_from_now() if deadline is None else deadline
        if not self._sync_sem.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise GuardTimeoutError(
                f"all {self.max_concurrency} connections stayed busy until the check's deadline"
            )
        try:
            try:
                return self._attempt(path, body, deadline)  # the common case stays off the retry machinery
            except GuardUnavailableError as exc:
                if not _retryable(exc) or self._attempts() == 1:
                    raise
                pause = self._delay(exc, 1)
                if time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
            for attempt in Retrying(**self._retry_kwargs(deadline)):
                with attempt:
                    return self._attempt(path, body, deadline)
        finally:
            self._sync_sem.release()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def close(self) -> None:
        if self._http_client is not None and self._own_http_client:
            self._http_client.close()
            self._http_client = None
            self._sockets_clamped = False

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
            state.session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                auto_decompress=False,  # decoded by _Body, with bounded output
                timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout bounds every attempt
            )
            # asyncio.run() (and pytest's loops) call loop.shutdown_asyncgens() before closing the loop: a primed
            # async generator's `finally` is the one hook that closes the session cleanly when a caller never
            # calls aclose(), e.g. `asyncio.run(guard.acheck(...))` in a script.
            state.closer = _close_on_loop_shutdown(state)
            await anext(state.closer)
        return state.session

    async def _aattempt(self, state: _LoopState, path: str, body: bytes, deadline: float) -> dict[str, Any]:
        now = time.monotonic()
        if now >= deadline:
            raise self._out_of_time()
        attempt_deadline = min(deadline, now + self.timeout)
        ep = self.pool.pick()
        try:
            try:
                async with asyncio.timeout(attempt_deadline - now):
                    if self._http_async_client is not None:
                        status, headers, raw = await self._ahttpx(ep, path, body, attempt_deadline)
                    else:
                        status, headers, raw = await self._aiohttp(state, ep, path, body)
            except (TimeoutError, httpx.TimeoutException):
                raise self._timed_out(ep, deadline, attempt_deadline) from None
            except (aiohttp.ClientError, httpx.TransportError) as exc:
                raise GuardConnectionError(f"{ep.base_url}: {type(exc).__name__}") from None
            result = _decode(status, headers, raw, self._secrets)
        except GuardUnavailableError as exc:
            self._track(ep, exc)
            raise
        self._track(ep, None)
        return result

    async def _aiohttp(
        self, state: _LoopState, ep: Endpoint, path: str, body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        session = await self._session(state)
        async with session.post(ep.url(path), data=body, allow_redirects=False) as r:
            try:
                limit, cut = self._body_limit(r.status)
                reader = _Body(limit, r.headers.get("Content-Encoding", ""), r.content_length, cut=cut)
                async for chunk in r.content.iter_chunked(_CHUNK):
                    reader.feed(chunk)
                    if reader.done:
                        break
            except BaseException:
                r.close()  # never hand a half-read connection back to the pool
                raise
            return r.status, r.headers, reader.value()  # case-insensitive already: no per-response copy

    async def _ahttpx(
        self, ep: Endpoint, path: str, body: bytes, attempt_deadline: float
    ) -> tuple[int, Mapping[str, str], bytes]:
        client = self._http_async_client
        assert client is not None
        left = attempt_deadline - time.monotonic()
        request = client.build_request(
            "POST", ep.url(path), content=body, headers=self._headers, timeout=min(self.timeout, left)
        )
        r = await client.send(request, stream=True, follow_redirects=False)
        try:
            reader = self._reader(r)
            if r.is_stream_consumed:
                reader.feed(r.content)
            else:
                async for chunk in r.aiter_raw():
                    reader.feed(chunk)
                    if reader.done:
                        break
            return r.status_code, r.headers, reader.value()
        finally:
            await r.aclose()

    async def apost(self, path: str, body: bytes, *, deadline: float | None = None) -> dict[str, Any]:
        deadline = self.deadline_from_now() if deadline is None else deadline
        state = self.loop_state()
        try:
            if state.semaphore.locked():  # waiting for a slot counts against the deadline too
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await state.semaphore.acquire()
            else:
                await state.semaphore.acquire()
        except TimeoutError:
            raise GuardTimeoutError(
                f"all {self.max_concurrency} connections stayed busy until the check's deadline"
            ) from None
        try:
            try:
                return await self._aattempt(state, path, body, deadline)
            except GuardUnavailableError as exc:
                if not _retryable(exc) or self._attempts() == 1:
                    raise
                pause = self._delay(exc, 1)
                if time.monotonic() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)
            async for attempt in AsyncRetrying(**self._retry_kwargs(deadline)):
                with attempt:
                    return await self._aattempt(state, path, body, deadline)
        finally:
            state.semaphore.release()
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
