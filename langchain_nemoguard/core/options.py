"""Option groups of :class:`NemoGuard` that are not owned by another module (httpx style: small frozen values).

``NemoGuard`` keeps the common settings flat (``base_url``, ``provider``, ``model``, ``api_key``, ``mode``,
``policy``, ``policies``, ``on_error``, ``timeout``, ``max_retries``) and takes the rest in groups:

* ``transport=TransportOptions(...)`` - how requests go out (this module);
* ``cache=CacheOptions(...)`` - the verdict cache (this module);
* ``calls=CallOptions(...)`` - how each model call is built and read: format, token budget, grammar (this module);
* ``audit=AuditOptions(...)`` - where verdicts and THINK audits are delivered (this module);
* ``images=ImageOptions(...)`` - image vetting and fetching (:mod:`.images.options`);
* ``windows=WindowOptions(...)`` - how a conversation is cut into calls (:mod:`.windows`);
* ``stream=StreamOptions(...)`` - streamed output hold-back (:mod:`.windows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from .errors import ConfigurationError
from .formats.reading import DEFAULT_MAX_COMPLETION_CHARS
from .transport import DEFAULT_MAX_RESPONSE_BYTES

if TYPE_CHECKING:
    from .formats.base import ModelFormat
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
    """

    format: ModelFormat | None = None
    max_tokens: int | None = None
    constrain_output: bool = False
    max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.max_completion_chars < 1:
            raise ConfigurationError(f"max_completion_chars must be >= 1, got {self.max_completion_chars}")


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """Where verdicts go besides the caller, and THINK audits beside fast checks.

    Args:
        on_verdict: Called with every verdict a check returns (a failing callback is logged, never raised).
        think: After each fast or categories verdict, run a THINK-mode check of the same input in the
            background, for the record (its reasoning trace goes to ``on_audit`` and the log).
        on_audit: Called with each THINK audit's verdict.
    """

    on_verdict: Callable[[Verdict], None] | None = None
    think: bool = False
    on_audit: Callable[[Verdict], None] | None = None


__all__ = ["AuditOptions", "CacheOptions", "CallOptions", "TransportOptions"]
