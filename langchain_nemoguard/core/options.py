"""Option groups of :class:`NemoGuard` that are not owned by another module (httpx style: small frozen values).

``NemoGuard`` keeps the common settings flat (``base_url``, ``provider``, ``model``, ``api_key``, ``mode``,
``policy``, ``policies``, ``on_error``, ``timeout``, ``max_retries``) and takes the rest in groups:

* ``transport=TransportOptions(...)`` - how requests go out (this module);
* ``cache=CacheOptions(...)`` - the verdict cache (this module);
* ``calls=CallOptions(...)`` - how each model call is built and read: format, token budget, grammar (this module);
* ``audit=AuditOptions(...)`` - where verdicts, records and THINK audits are delivered (this module);
* ``images=ImageOptions(...)`` - image vetting and fetching (:mod:`.images.options`);
* ``windows=WindowOptions(...)`` - how a conversation is cut into calls (:mod:`.windows`);
* ``stream=StreamOptions(...)`` - streamed output hold-back (:mod:`.windows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from .errors import ConfigurationError
from .formats.reading import DEFAULT_MAX_COMPLETION_CHARS
from .transport import DEFAULT_MAX_RESPONSE_BYTES

if TYPE_CHECKING:
    from .formats.base import ModelFormat
    from .telemetry import GuardObserver
    from .verdict import Verdict


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """How requests reach the model server.

    Args:
        max_concurrency: Requests in flight at once, per event loop (async) and per guard (sync).
        headers: Extra HTTP headers sent with every request (an ``Authorization`` header comes from
            ``api_key``; never put a key here if it may be logged by a proxy).
        http_client: An ``httpx.Client`` for the sync path, used as given (proxies, mTLS, event hooks).
        http_async_client: An ``httpx.AsyncClient`` for the async path, used as given instead of aiohttp.
        deadline: Seconds one check may take in all, sync or async: every attempt, retry, backoff and wait for
            a connection ends by then, so a server that trickles, stalls or never answers cannot hold a check
            longer (None: ``timeout`` times the tries, ``max_retries + 1`` plus one per extra endpoint).
        max_response_bytes: The largest response body read (16 MB), decoded gzip/deflate included; a larger
            one is refused while it streams in, never buffered whole. Error bodies are cut at 64 KB.
    """

    max_concurrency: int = 64
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    http_client: httpx.Client | None = field(default=None, compare=False, repr=False)
    http_async_client: httpx.AsyncClient | None = field(default=None, compare=False, repr=False)
    deadline: float | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.deadline is not None and not self.deadline > 0:
            raise ConfigurationError(f"deadline must be > 0, got {self.deadline}")
        if self.max_response_bytes < 1:
            raise ConfigurationError(f"max_response_bytes must be >= 1, got {self.max_response_bytes}")


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """The verdict cache (errors are never cached).

    Args:
        size: Verdicts kept, least recently used evicted first; 0 turns caching off (identical concurrent
            checks still share one call).
        ttl: Seconds a verdict stays valid.
    """

    size: int = 4096
    ttl: float = 300.0

    def __post_init__(self) -> None:
        if self.size < 0 or not self.ttl > 0:
            raise ConfigurationError("cache size must be >= 0 and ttl > 0")


@dataclass(frozen=True, slots=True)
class CallOptions:
    """How each model call is built and read.

    Args:
        format: The model's wire format (None: Nemotron 3.5 Content Safety).
        max_tokens: The answer's token budget (None: the format's budget for the mode).
        constrain_output: vLLM only: a ``structured_outputs`` grammar that admits only a well-formed verdict.
        max_completion_chars: The most characters of one answer that are read (64 KB): an unsafe reading found
            there stands, anything else past it is an error (a bigger answer is no verdict anyone asked for).
        scores: Ask for token log-probabilities so verdicts carry ``score`` (True: always; False: never; None:
            when the provider supports them - vLLM does). Not asked in THINK mode, where the trace would make
            the answer tens of times larger; THINK verdicts have no score.
        top_logprobs: Alternatives per token asked for with ``scores`` (1-20; the score renormalises over the
            safe and unsafe ones among them).
    """

    format: ModelFormat | None = None
    max_tokens: int | None = None
    constrain_output: bool = False
    max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS
    scores: bool | None = None
    top_logprobs: int = 5

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.max_completion_chars < 1:
            raise ConfigurationError(f"max_completion_chars must be >= 1, got {self.max_completion_chars}")
        if not 1 <= self.top_logprobs <= 20:
            raise ConfigurationError(f"top_logprobs must be in 1..20, got {self.top_logprobs}")


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """Where verdicts go besides the caller: callbacks, observers (metrics, traces, audit sinks), THINK audits.

    Args:
        on_verdict: Called with every verdict a check returns (a failing callback is logged, never raised).
        think: After each fast or categories verdict that went to the model, judge the same input again in
            THINK mode in the background, for the record (:mod:`.think`): the trace and whether the THINK
            verdict disagrees go into the check's audit record and to ``on_audit``, never to the plain log.
        on_audit: Called with each THINK audit's verdict.
        observers: Metrics, tracers and audit sinks (:class:`~.telemetry.GuardObserver`), told about every
            check: ``langchain_nemoguard.observability.GuardMetrics`` / ``GuardTracer``,
            :class:`~.audit.JsonlAuditSink`, :class:`~.audit.LoggingAuditSink`.
        think_queue: THINK audits queued at most (per event loop, and for sync checks); when full, the oldest
            is dropped and counted.
        think_concurrency: THINK audits running at once (per event loop, and for sync checks).
        think_drain_s: Seconds ``close()`` / ``aclose()`` wait for queued THINK audits before dropping the rest
            (counted; their records are still written, without the audit).
        record_endpoint: Put the endpoint's URL in audit records (without credentials, query or fragment);
            off by default, since an internal address is configuration a record need not carry.
    """

    on_verdict: Callable[[Verdict], None] | None = None
    think: bool = False
    on_audit: Callable[[Verdict], None] | None = None
    observers: Sequence[GuardObserver] = ()
    think_queue: int = 256
    think_concurrency: int = 2
    think_drain_s: float = 5.0
    record_endpoint: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "observers", tuple(self.observers))
        if self.think_queue < 1 or self.think_concurrency < 1:
            raise ConfigurationError("think_queue and think_concurrency must be >= 1")
        if not self.think_drain_s >= 0:
            raise ConfigurationError(f"think_drain_s must be >= 0, got {self.think_drain_s}")


__all__ = ["AuditOptions", "CacheOptions", "CallOptions", "TransportOptions"]
