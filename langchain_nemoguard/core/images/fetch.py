"""SSRF-safe fetching of remote images: the security-critical code, in a room of its own.

Only with ``ImageOptions(fetch_remote_images=True)``. Every address a name resolves to is vetted (private,
loopback, link-local, reserved, NAT64/6to4/mapped forms of them: refused), the connection goes to the vetted
address itself (so DNS rebinding between check and connect cannot reach a private host), every redirect hop is
re-validated, the body is read uncompressed under a byte limit, and ``fetch_timeout`` bounds the whole of DNS,
connects, reads and redirects. Sync and async share all of it but the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

import httpx

from ..errors import ImageError, ImageTooLargeError, UnsafeURLError
from .options import ImageOptions, shorten

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})
# Octet-stream is what object stores often send for uploads; the decoder's format allow-list is the real
# gate, the content type only turns away the obvious (an HTML error page, JSON).
_ACCEPTED_CONTENT_TYPES: Final = ("image/", "application/octet-stream")
# Well-known NAT64 prefix (RFC 6052): judged only by the IPv4 address it embeds, so DNS64 networks work.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
# Refused whatever the flags say: local-use NAT64 (RFC 8215) maps into someone's own network, the IETF
# protocol block 192.0.0.0/24 is not generally reachable, and fec0::/10 is the deprecated site-local range
# that some stacks still route internally.
_ALWAYS_FORBIDDEN: Final = (
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "IETF protocol assignment"),
    (ipaddress.IPv6Network("fec0::/10"), "site-local"),
)

def default_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver; every address it returns, deduplicated, in order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)




# --- SSRF-safe fetching: shared pieces ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Hop:
    """One request of a fetch: the URL as given, and where we actually connect."""

    url: httpx.URL  # as the caller or the redirect named it (fragment dropped); redirects resolve against it
    connect_url: httpx.URL  # the same URL with the host replaced by the vetted IP
    host_header: str
    sni_hostname: str | None  # https only: certificate checked against the name, not the IP


def parse_remote_url(url: str | httpx.URL) -> tuple[httpx.URL, str, int]:
    """Parse and vet the shape of an http(s) URL: ``(url without fragment, ascii host, port)``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeURLError(f"malformed image URL {shorten(str(url))!r}") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeURLError(f"refusing image URL with scheme {shorten(parsed.scheme)!r}: only http(s)")
    if not parsed.raw_host:
        raise UnsafeURLError(f"image URL has no host: {redact(parsed)!r}")
    if parsed.userinfo:
        raise UnsafeURLError("image URLs with credentials (user:password@) are refused")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded; IPv6 literals without brackets
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.copy_with(fragment=None), host, port


def literal_ip(host: str) -> IPAddress | None:
    """The address if ``host`` is an IP literal - including the legacy IPv4 spellings browsers and
    ``getaddrinfo`` accept (``2130706433``, ``0x7f.1``, ``127.1``), which are classic SSRF filter bypasses."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefABCDEFxX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _forbidden_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from, or None if it is a public unicast address.

    IPv6 forms that embed an IPv4 address are judged by the embedded address: ``::ffff:127.0.0.1``
    (mapped), ``2002:7f00:1::`` (6to4) and ``64:ff9b::7f00:1`` (NAT64) are loopback however they are spelled.
    """
    for network, reason in _ALWAYS_FORBIDDEN:
        if ip.version == network.version and ip in network:
            return reason
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "scoped (link-local) address"
        if ip.ipv4_mapped is not None:
            return _embedded_reason(ip.ipv4_mapped)
        if ip in _NAT64:
            # The prefix itself is "reserved" to ipaddress; only what it translates to matters.
            return _embedded_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            inner = _embedded_reason(ip.sixtofour)
            if inner is not None:
                return inner
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        # Catches the ranges the flags above miss, e.g. 100.64.0.0/10 (carrier-grade NAT, shared space).
        ("not globally routable", not ip.is_global),
    )
    for reason, hit in checks:
        if hit:
            return reason
    return None


def _embedded_reason(embedded: ipaddress.IPv4Address) -> str | None:
    inner = _forbidden_reason(embedded)
    return None if inner is None else f"embeds {embedded}, {inner}"


def check_addresses(host: str, addresses: Iterable[str]) -> str:
    """Vet every resolved address; refuse if ANY is forbidden (an attacker controls which one we'd get).
    Returns the address to connect to (an IPv4-mapped IPv6 address as plain IPv4)."""
    vetted: list[IPAddress] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeURLError(f"{host!r} resolved to something that is not an IP address") from None
        reason = _forbidden_reason(ip)
        if reason is not None:
            raise UnsafeURLError(f"refusing to fetch from {host!r}: it resolves to {ip} ({reason})")
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        vetted.append(ip)
    if not vetted:
        raise UnsafeURLError(f"{host!r} did not resolve to any address")
    return str(vetted[0])


def _plan_hop(url: httpx.URL, host: str, ip: str) -> _Hop:
    """Pin the request to the vetted IP while keeping what the server and TLS must see: Host and SNI."""
    connect_url = url.copy_with(host=ip)
    sni = host if url.scheme == "https" and literal_ip(host) is None else None
    return _Hop(url=url, connect_url=connect_url, host_header=url.netloc.decode("ascii"), sni_hostname=sni)


def _build_request(client: httpx.Client | httpx.AsyncClient, hop: _Hop, remaining: float) -> httpx.Request:
    extensions = {"sni_hostname": hop.sni_hostname} if hop.sni_hostname else None
    return client.build_request(
        "GET",
        hop.connect_url,
        headers={
            "Host": hop.host_header,
            "Accept": "image/*",
            # Uncompressed, so the byte count we enforce is the byte count that arrives (no gzip bombs).
            "Accept-Encoding": "identity",
            "User-Agent": "langchain-nemoguard",
        },
        extensions=extensions,
        timeout=max(remaining, 0.001),
    )


def _next_url(response: httpx.Response, hop: _Hop, opts: ImageOptions) -> httpx.URL | None:
    """After the headers: the redirect target to validate next, or None if the body is to be read."""
    status = response.status_code
    if status in _REDIRECT_CODES:
        location = response.headers.get("location")
        if not location:
            raise ImageError(f"fetching {redact(hop.url)!r}: HTTP {status} redirect without a Location")
        try:
            return hop.url.join(location)
        except (httpx.InvalidURL, ValueError):
            raise UnsafeURLError(f"fetching {redact(hop.url)!r}: malformed redirect target") from None
    if not 200 <= status < 300:
        raise ImageError(f"fetching {redact(hop.url)!r}: HTTP {status}")
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype.startswith(_ACCEPTED_CONTENT_TYPES):
        shown = shorten(ctype) if ctype else "no content type"
        raise ImageError(f"fetching {redact(hop.url)!r}: got {shown!r}, not an image")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > opts.max_bytes:
        raise ImageTooLargeError(
            f"image at {redact(hop.url)!r} is {int(declared):,} bytes, "
            f"over the {opts.max_bytes:,}-byte limit"
        )
    return None


class _Body:
    """Accumulates a streamed body, aborting past the byte limit or the overall deadline."""

    __slots__ = ("_chunks", "_deadline", "_limit", "_size", "_url")

    def __init__(self, url: httpx.URL, limit: int, deadline: float) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._deadline = deadline
        self._url = url

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise ImageTooLargeError(
                f"image at {redact(self._url)!r} is over the {self._limit:,}-byte limit"
            )
        if time.monotonic() > self._deadline:
            raise ImageError(f"fetching {redact(self._url)!r} timed out")
        self._chunks.append(chunk)

    def value(self) -> bytes:
        return b"".join(self._chunks)


def _check_deadline(url: httpx.URL, deadline: float) -> None:
    if time.monotonic() > deadline:
        raise ImageError(f"fetching {redact(url)!r} timed out")


def _too_many_redirects(url: str, opts: ImageOptions) -> ImageError:
    return ImageError(f"fetching {redact(httpx.URL(url))!r}: more than {opts.max_redirects} redirects")


def _network_error(url: httpx.URL, exc: Exception) -> ImageError:
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ImageError(f"fetching {redact(url)!r} timed out")
    return ImageError(f"fetching {redact(url)!r} failed: {type(exc).__name__}")


# --- SSRF-safe fetching: sync -------------------------------------------------------------------------------


def _resolve_sync(host: str, port: int, opts: ImageOptions, deadline: float) -> str:
    """Resolve and vet. The resolver runs in a worker thread so slow DNS cannot outlast the deadline."""
    literal = literal_ip(host)
    if literal is not None:
        return check_addresses(host, [str(literal)])
    resolver = opts.resolver or default_resolver
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nemoguard-dns")
    try:
        future = pool.submit(resolver, host, port)
        addresses = future.result(timeout=max(deadline - time.monotonic(), 0.001))
    except OSError as exc:
        raise UnsafeURLError(f"cannot resolve {host!r}: {exc.strerror or type(exc).__name__}") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return check_addresses(host, addresses)


def fetch_sync(url: str, opts: ImageOptions) -> bytes:
    """Fetch with every hop vetted; ``fetch_timeout`` bounds the whole of DNS, connects, reads, redirects."""
    deadline = time.monotonic() + opts.fetch_timeout
    current: httpx.URL | str = url
    # follow_redirects=False: each hop must be re-vetted here. trust_env=False: a proxy from the environment
    # would pick the address itself, undoing the pinning to the vetted IP.
    with httpx.Client(
        transport=opts.transport, follow_redirects=False, trust_env=False, timeout=opts.fetch_timeout
    ) as client:
        for _ in range(opts.max_redirects + 1):
            parsed, host, port = parse_remote_url(current)
            try:
                _check_deadline(parsed, deadline)
                hop = _plan_hop(parsed, host, _resolve_sync(host, port, opts, deadline))
                request = _build_request(client, hop, deadline - time.monotonic())
                response = client.send(request, stream=True)
                try:
                    nxt = _next_url(response, hop, opts)
                    if nxt is None:
                        body = _Body(hop.url, opts.max_bytes, deadline)
                        for chunk in response.iter_bytes():
                            body.add(chunk)
                        return body.value()
                finally:
                    response.close()
            except (httpx.HTTPError, TimeoutError) as exc:
                raise _network_error(parsed, exc) from None
            current = nxt
    raise _too_many_redirects(url, opts)


# --- SSRF-safe fetching: async ------------------------------------------------------------------------------


async def _resolve_async(host: str, port: int, opts: ImageOptions) -> str:
    literal = literal_ip(host)
    if literal is not None:
        return check_addresses(host, [str(literal)])
    resolver = opts.resolver or default_resolver
    try:
        addresses = await asyncio.to_thread(resolver, host, port)
    except OSError as exc:
        raise UnsafeURLError(f"cannot resolve {host!r}: {exc.strerror or type(exc).__name__}") from None
    return check_addresses(host, addresses)


async def fetch_async(url: str, opts: ImageOptions) -> bytes:
    """The async twin of :func:`fetch_sync`; ``asyncio.timeout`` bounds the whole fetch."""
    deadline = time.monotonic() + opts.fetch_timeout
    current: httpx.URL | str = url
    parsed, _host, _port = parse_remote_url(url)
    try:
        async with asyncio.timeout(opts.fetch_timeout):
            async with httpx.AsyncClient(
                transport=opts.async_transport,
                follow_redirects=False,
                trust_env=False,
                timeout=opts.fetch_timeout,
            ) as client:
                for _ in range(opts.max_redirects + 1):
                    parsed, host, port = parse_remote_url(current)
                    hop = _plan_hop(parsed, host, await _resolve_async(host, port, opts))
                    request = _build_request(client, hop, deadline - time.monotonic())
                    response = await client.send(request, stream=True)
                    try:
                        nxt = _next_url(response, hop, opts)
                        if nxt is None:
                            body = _Body(hop.url, opts.max_bytes, deadline)
                            async for chunk in response.aiter_bytes():
                                body.add(chunk)
                            return body.value()
                    finally:
                        await response.aclose()
                    current = nxt
    except (httpx.HTTPError, TimeoutError) as exc:
        raise _network_error(parsed, exc) from None
    raise _too_many_redirects(url, opts)


def redact(url: httpx.URL) -> str:
    """A URL fit for an error message: no query (signed URLs carry credentials there), no fragment."""
    return shorten(str(url.copy_with(query=None, fragment=None)))


__all__ = ["check_addresses", "default_resolver", "fetch_async", "fetch_sync", "literal_ip", "parse_remote_url"]
