"""Every check is bounded: against a scripted endpoint that trickles, stalls, hangs, floods, redirects or echoes
the API key, ``check()`` and ``acheck()`` return on time, within memory, and tell nothing they must not.

Timing bounds are generous (the test machine is noisy): what is asserted is that the deadline, not the
endpoint, decides when a check ends - several times sooner than the endpoint would let it.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from misbehaving import MisbehavingServer

from langchain_nemoguard import ErrorCode, NemoGuard, TransportOptions

KEY = "nvapi-TOP-SECRET-0123456789abcdef"
DEADLINE = 0.6
SLACK = 1.5  # scheduling noise on a shared two-core machine


@pytest.fixture(scope="module")
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as s:
        yield s


async def run(guard: NemoGuard, asynchronous: bool, **kw: object):
    try:
        if asynchronous:
            return await guard.acheck(prompt="hello", **kw)  # type: ignore[arg-type]
        return await asyncio.to_thread(guard.check, prompt="hello", **kw)  # type: ignore[arg-type]
    finally:
        await guard.aclose()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("behaviour", ["trickle", "trickle-headers", "stall", "hang"])
async def test_no_endpoint_holds_a_check_past_its_deadline(
    server: MisbehavingServer, behaviour: str, asynchronous: bool
) -> None:
    # timeout alone would allow 3 x 10 s here (and a trickle defeats a per-read timeout forever)
    guard = NemoGuard(
        server.url(behaviour), timeout=10, max_retries=2, transport=TransportOptions(deadline=DEADLINE)
    )
    t0 = time.monotonic()
    v = await run(guard, asynchronous)
    elapsed = time.monotonic() - t0
    assert v.error is ErrorCode.TIMEOUT and not v.safe
    assert "deadline" in (v.error_message or "")
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + SLACK


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_fail_open_after_the_deadline_is_still_on_time(
    server: MisbehavingServer, asynchronous: bool
) -> None:
    guard = NemoGuard(
        server.url("trickle"), timeout=10, transport=TransportOptions(deadline=DEADLINE), on_error="allow"
    )
    t0 = time.monotonic()
    v = await run(guard, asynchronous)
    assert v.safe and v.error is ErrorCode.TIMEOUT
    assert time.monotonic() - t0 < DEADLINE + SLACK


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("behaviour", ["trickle", "stall"])
async def test_a_callers_own_httpx_client_is_held_to_the_deadline_too(
    server: MisbehavingServer, behaviour: str, asynchronous: bool
) -> None:
    client = httpx.Client(timeout=30) if not asynchronous else None
    aclient = httpx.AsyncClient(timeout=30) if asynchronous else None
    options = TransportOptions(deadline=DEADLINE, http_client=client, http_async_client=aclient)
    guard = NemoGuard(server.url(behaviour), timeout=10, transport=options)
    t0 = time.monotonic()
    v = await run(guard, asynchronous)
    assert v.error is ErrorCode.TIMEOUT
    assert time.monotonic() - t0 < DEADLINE + SLACK
    if client is not None:
        client.close()
    if aclient is not None:
        await aclient.aclose()


def test_default_deadline_is_about_timeout_times_tries() -> None:
    assert NemoGuard("http://127.0.0.1:9/v1", timeout=2, max_retries=2).deadline == pytest.approx(6.0)
    short = NemoGuard("http://127.0.0.1:9/v1", timeout=2, transport=TransportOptions(deadline=0.5))
    assert short.deadline == 0.5


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("behaviour", ["huge", "huge-chunked", "gzip-bomb"])
async def test_a_huge_body_is_refused_while_it_is_read(
    server: MisbehavingServer, behaviour: str, asynchronous: bool
) -> None:
    limit = 1024 * 1024
    options = TransportOptions(max_response_bytes=limit)
    guard = NemoGuard(server.url(behaviour), transport=options, max_retries=0, timeout=20)
    tracemalloc.start()
    try:
        v = await run(guard, asynchronous)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert v.error is ErrorCode.BAD_RESPONSE and not v.safe
    assert "limit" in (v.error_message or "")
    # a 50 MB body (100 MB once gunzipped) costs no more than about the cap
    assert peak < 4 * limit, f"peak {peak:,} bytes"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_redirects_are_refused_and_not_followed(server: MisbehavingServer, asynchronous: bool) -> None:
    before = len([p for p in server.record.paths if "from=redirect" in p])
    v = await run(NemoGuard(server.url("redirect"), max_retries=2), asynchronous)
    assert v.error is ErrorCode.HTTP_STATUS and not v.safe
    assert "redirect" in (v.error_message or "") and "127.0.0.1" not in (v.error_message or "")
    assert len([p for p in server.record.paths if "from=redirect" in p]) == before  # the target never asked


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("behaviour", ["echo-key", "echo-key-500"])
async def test_a_key_echoed_in_an_error_body_is_redacted(
    server: MisbehavingServer, behaviour: str, asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    guard = NemoGuard(server.url(behaviour), api_key=KEY, max_retries=1)
    with caplog.at_level("DEBUG"):
        v = await run(guard, asynchronous)
    assert server.record.authorization[-1] == f"Bearer {KEY}"  # it was sent, and echoed back
    assert v.error in (ErrorCode.HTTP_STATUS,) and not v.safe
    shown = [v.error_message or "", repr(v), str(v.to_dict()), caplog.text]
    for text in shown:
        assert KEY not in text
        assert KEY[:8] not in text and KEY[-10:] not in text  # nor the masked or partial forms
    assert "[redacted]" in (v.error_message or "")
    from langchain_nemoguard import GuardUnavailableError

    with pytest.raises(GuardUnavailableError) as e:
        v.raise_for_error()
    assert KEY not in str(e.value)


async def test_an_honest_endpoint_still_answers(server: MisbehavingServer) -> None:
    assert (await run(NemoGuard(server.url("ok")), True)).safe
    assert (await run(NemoGuard(server.url("ok")), False)).safe


def test_proxy_variables_still_route_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    # The built-in client keeps honouring HTTP(S)_PROXY (httpx's own transports, deadline kept between reads);
    # NO_PROXY alone changes nothing.
    monkeypatch.setenv("NO_PROXY", "example.test")
    plain = NemoGuard("http://127.0.0.1:9/v1")
    plain._transport._client()
    assert plain._transport._sockets_clamped
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    proxied = NemoGuard("http://127.0.0.1:9/v1")
    proxied._transport._client()
    assert not proxied._transport._sockets_clamped
    plain.close()
    proxied.close()
