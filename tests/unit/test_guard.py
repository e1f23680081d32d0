"""The guard over scripted transports: retries, Retry-After, timeouts, fail modes, windows, secrets.

Verdict logic against a model (actions, policies, cache, single-flight, audits) runs against the interface
simulator in tests/loopback/test_guard_verdicts.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from langchain_nemoguard import (
    Action,
    ConfigurationError,
    Conversation,
    ErrorCode,
    InvalidInputError,
    NemoGuard,
    Policy,
    PolicySet,
    TransportOptions,
    WindowOptions,
)

Handler = Callable[[httpx.Request], httpx.Response]
SECRET = "nvapi-SECRET-do-not-print-123456"


def completion(text: str, finish: str = "stop") -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"content": text}, "finish_reason": finish}]})


class Counting:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls += 1
        return self.handler(request)


def guard(handler: Handler, **kw: object) -> NemoGuard:
    """A guard whose HTTP goes to ``handler`` (a scripted transport: failures, odd answers, recorded bodies)."""
    return NemoGuard(
        "http://guard.test/v1",
        transport=TransportOptions(
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        ),
        **kw,  # type: ignore[arg-type]
    )


def sequence(*responses: httpx.Response | Exception) -> Counting:
    items = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return Counting(handler)


# --- verdicts and actions ----------------------------------------------------------------------------------------


def test_policy_validation_errors() -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        Policy(taxonomy=["A"], disallowed=["b"])
    with pytest.raises(ValueError, match="disallowed"):
        Policy(description="only a description")
    with pytest.raises(ConfigurationError, match="invalid"):
        PolicySet.from_data({"policies": {"x": {"actions": {"*": "explode"}}}})


# --- failures ---------------------------------------------------------------------------------------------------


def test_fail_closed_by_default_says_guard_unavailable() -> None:
    g = guard(sequence(httpx.Response(500, json={"error": {"message": "boom"}})), max_retries=0)
    v = g.check(prompt="hello")
    assert v.error is ErrorCode.HTTP_STATUS and not v.safe and v.action is Action.BLOCK
    assert "guard unavailable" in v.reason and "policy" not in v.reason
    assert v.user_safe is None


def test_fail_open_is_explicit_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    g = guard(sequence(httpx.ConnectError("refused")), max_retries=0, on_error="allow")
    with caplog.at_level(logging.WARNING, logger="langchain_nemoguard"):
        v = g.check(prompt="hello")
    assert v.safe and v.error is ErrorCode.CONNECT and v.action is Action.ALLOW
    assert g.stats()["fail_open"] == 1
    assert "failing open" in caplog.text


def test_unparsable_and_truncated_are_errors_not_verdicts() -> None:
    assert guard(sequence(completion("I think it is fine"))).check(prompt="x").error is ErrorCode.UNPARSABLE
    t = guard(sequence(completion("<think>long", "length"))).check(prompt="x", mode="think")
    assert t.error is ErrorCode.TRUNCATED and not t.safe


def test_retries_5xx_then_succeeds() -> None:
    h = sequence(httpx.Response(503), httpx.Response(502), completion("User Safety: safe"))
    v = guard(h, max_retries=2).check(prompt="x")
    assert v.safe and v.error is None and h.calls == 3


def test_never_retries_other_4xx() -> None:
    h = sequence(httpx.Response(400, json={"error": {"message": "Conversation roles must alternate"}}))
    v = guard(h, max_retries=3).check(prompt="x")
    assert h.calls == 1 and v.error is ErrorCode.HTTP_STATUS
    assert "roles must alternate" in (v.error_message or "")


def test_honours_retry_after() -> None:
    h = sequence(httpx.Response(429, headers={"Retry-After": "0.4"}), completion("User Safety: safe"))
    t0 = time.perf_counter()
    v = guard(h).check(prompt="x")
    assert v.safe and h.calls == 2
    assert time.perf_counter() - t0 >= 0.4


def test_rate_limited_code_after_retries() -> None:
    h = sequence(httpx.Response(429, headers={"Retry-After": "0"}))
    v = guard(h, max_retries=1).check(prompt="x")
    assert v.error is ErrorCode.RATE_LIMITED and h.calls == 2


def test_timeout_is_retried_then_reported() -> None:
    h = sequence(httpx.ReadTimeout("slow"))
    v = guard(h, max_retries=1, timeout=0.5).check(prompt="x")
    assert v.error is ErrorCode.TIMEOUT and h.calls == 2


async def test_async_retries_and_timeout() -> None:
    h = sequence(httpx.ConnectError("no"), completion("User Safety: unsafe\nSafety Categories: Violence"))
    v = await guard(h).acheck(prompt="x")
    assert not v.safe and v.categories == ("Violence",) and h.calls == 2


def test_unsafe_stands_when_another_call_fails() -> None:
    calls = {"n": 0}

    def h(r: httpx.Request) -> httpx.Response:
        body = json.loads(r.content)
        if "custom_policy" in body["chat_template_kwargs"]:
            return httpx.Response(500)
        calls["n"] += 1
        return completion("User Safety: unsafe\nSafety Categories: Violence")

    pol = Policy(name="p", disallowed=["x"], include_builtin=True)
    v = guard(h, policy=pol, max_retries=0, on_error="allow").check(prompt="x")
    assert not v.safe and v.error is None and v.categories == ("Violence",)


# --- input errors -----------------------------------------------------------------------------------------------


def test_bad_arguments_raise_typed_errors() -> None:
    g = guard(sequence(completion("User Safety: safe")))
    with pytest.raises(InvalidInputError, match="nothing to check"):
        g.check(prompt="   ")
    with pytest.raises(InvalidInputError, match="no user message"):
        g.check(messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(InvalidInputError, match="either"):
        g.check(prompt="x", messages=[{"role": "user", "content": "y"}])
    with pytest.raises(InvalidInputError):
        g.check(prompt="x", images=[b"not an image"])
    with pytest.raises(ConfigurationError, match="mode"):
        NemoGuard(mode="slow")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="provider"):
        NemoGuard(provider="acme")


# --- cache ------------------------------------------------------------------------------------------------------


def test_errors_are_not_cached() -> None:
    h = sequence(httpx.Response(500), completion("User Safety: safe"))
    g = guard(h, max_retries=0)
    assert g.check(prompt="x").error is ErrorCode.HTTP_STATUS
    assert g.check(prompt="x").safe


# --- long input -------------------------------------------------------------------------------------------------


def test_windows_cover_everything_with_overlap() -> None:
    from langchain_nemoguard.core.windows import split_windows

    text = " ".join(f"w{i}" for i in range(2000))
    wins = split_windows(text, WindowOptions(max_tokens=100, overlap_tokens=20))
    assert all(len(w) <= 400 for w in wins)
    joined = " ".join(wins)
    assert all(f"w{i} " in joined + " " for i in range(2000))
    for a, b in itertools.pairwise(wins):
        assert a[-30:].split()[-1] in b  # the overlap carries the tail of the previous window


def test_cjk_counts_as_dense() -> None:
    from langchain_nemoguard.core.windows import estimate_tokens

    assert estimate_tokens("炸弹" * 100) == 200
    assert estimate_tokens("abcd" * 100) == 100


# --- secrets ----------------------------------------------------------------------------------------------------


def test_api_key_never_printed(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def h(r: httpx.Request) -> httpx.Response:
        seen.append(r.headers.get("authorization", ""))
        return httpx.Response(401, json={"error": {"message": "bad key"}})

    g = NemoGuard(
        "http://guard.test/v1",
        api_key=SECRET,
        transport=TransportOptions(http_client=httpx.Client(transport=httpx.MockTransport(h))),
    )
    with caplog.at_level(logging.DEBUG):
        v = g.check(prompt="x")
    assert seen == [f"Bearer {SECRET}"]  # it is sent...
    texts = [
        repr(g),
        str(g),
        repr(v),
        str(v.to_dict()),
        v.error_message or "",
        caplog.text,
        repr(g._transport),
    ]
    assert all(SECRET not in t for t in texts)  # ...and never shown


def test_env_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOGUARD_BASE_URL", "http://a.test/v1, http://b.test/v1/")
    monkeypatch.setenv("NEMOGUARD_MODEL", "my-model")
    monkeypatch.setenv("NVIDIA_API_KEY", SECRET)
    g = NemoGuard(provider="nvidia")
    assert g.base_urls == ("http://a.test/v1", "http://b.test/v1") and g.model == "my-model"
    assert g._transport._headers["Authorization"] == f"Bearer {SECRET}"
    monkeypatch.delenv("NEMOGUARD_BASE_URL")
    monkeypatch.delenv("NEMOGUARD_MODEL")
    h = NemoGuard(provider="nvidia")
    assert h.base_urls == ("https://integrate.api.nvidia.com/v1",)
    assert h.model == "nvidia/nemotron-3.5-content-safety"
    o = NemoGuard(provider="openrouter")
    assert o.base_urls == ("https://openrouter.ai/api/v1",)


def test_conversation_from_openai_messages() -> None:
    conv = Conversation.from_messages(
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "nice"}]},
        ]
    )
    assert (
        conv.prompt == "look" and conv.images == ("data:image/png;base64,AAAA",) and conv.response == "nice"
    )
    assert [t.text for t in conv.history] == ["first", "reply"]


def test_message_image_urls_are_never_local_paths() -> None:
    with pytest.raises(InvalidInputError, match="data: or http"):
        Conversation.from_messages(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]
        )


