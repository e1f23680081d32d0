"""The guard's logic with mocked HTTP: retries, Retry-After, timeouts, fail modes, cache, windows, secrets."""

from __future__ import annotations

import asyncio
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
    PolicyNotFoundError,
    PolicySet,
    WindowOptions,
)

Handler = Callable[[httpx.Request], httpx.Response]
SECRET = "nvapi-SECRET-do-not-print-123456"


def completion(text: str, finish: str = "stop") -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"content": text}, "finish_reason": finish}]})


def rule_handler(request: httpx.Request) -> httpx.Response:
    """A tiny rule model: 'bomb' is Violence, 'damn' is Profanity, in the user or assistant turn."""
    body = json.loads(request.content)
    msgs = body["messages"]
    user = msgs[-2] if msgs[-1]["role"] == "assistant" else msgs[-1]
    user_text = user["content"] if isinstance(user["content"], str) else user["content"][-1]["text"]
    resp = msgs[-1]["content"] if msgs[-1]["role"] == "assistant" else None

    def cats(t: str) -> list[str]:
        return [c for w, c in (("bomb", "Violence"), ("damn", "Profanity")) if w in t.lower()]

    uc, rc = cats(user_text), cats(resp or "")
    lines = [f"User Safety: {'unsafe' if uc else 'safe'}"]
    if resp is not None:
        lines.append(f"Response Safety: {'unsafe' if rc else 'safe'}")
    if (uc or rc) and body["chat_template_kwargs"]["request_categories"] == "/categories":
        lines.append("Safety Categories: " + ", ".join(dict.fromkeys(uc + rc)))
    return completion("\n".join(lines))


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
    return NemoGuard(
        "http://guard.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
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


def test_safe_and_unsafe() -> None:
    g = guard(rule_handler)
    ok = g.check(prompt="hello there")
    assert ok.safe and ok.user_safe and ok.action is Action.ALLOW and ok.error is None
    bad = g.check(prompt="how to build a bomb")
    assert not bad.safe and bad.user_safe is False and bad.categories == ("Violence",)
    assert bad.action is Action.BLOCK and not bad.allowed


def test_response_check() -> None:
    v = guard(rule_handler).check(prompt="tell me a story", response="the bomb went off")
    assert v.user_safe is True and v.response_safe is False and v.categories == ("Violence",)


async def test_async_matches_sync() -> None:
    g = guard(rule_handler)
    a = await g.acheck(prompt="a bomb", response="fine")
    g.clear_cache()
    s = g.check(prompt="a bomb", response="fine")
    assert (a.safe, a.user_safe, a.response_safe, a.categories) == (
        s.safe,
        s.user_safe,
        s.response_safe,
        s.categories,
    )


def test_per_category_actions() -> None:
    pol = Policy(actions={"Profanity": "log", "Violence": "rewrite", "*": "block"})
    g = guard(rule_handler, policy=pol)
    assert g.check(prompt="damn it").action is Action.LOG
    assert g.check(prompt="damn it").allowed
    assert g.check(prompt="a bomb").action is Action.REWRITE
    assert g.check(prompt="damn bomb").action is Action.REWRITE  # strictest of log and rewrite


def test_ignore_categories_suppresses() -> None:
    g = guard(rule_handler, policy=Policy(name="devops", ignore_categories=["violence"]))
    v = g.check(prompt="a bomb")  # only Violence: suppressed
    assert v.safe and v.suppressed_categories == ("Violence",)
    w = g.check(prompt="damn bomb")  # Profanity stays
    assert not w.safe and w.categories == ("Profanity",) and w.suppressed_categories == ("Violence",)


def test_fast_mode_asks_for_categories_when_the_policy_needs_them() -> None:
    rec: list[dict] = []

    def h(r: httpx.Request) -> httpx.Response:
        rec.append(json.loads(r.content))
        return rule_handler(r)

    guard(h, mode="fast", policy=Policy(ignore_categories=["Violence"])).check(prompt="x")
    assert rec[0]["chat_template_kwargs"]["request_categories"] == "/categories"


def test_named_policies(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "default: strict\npolicies:\n  strict: {}\n  devops:\n    ignore_categories: [Violence]\n"
    )
    g = guard(rule_handler, policies=str(path))
    assert g.policy.name == "strict"
    assert not g.check(prompt="a bomb").safe
    assert g.check(prompt="a bomb", policy="devops").safe
    with pytest.raises(PolicyNotFoundError, match="unknown policy 'nope'; known policies: devops, strict"):
        g.check(prompt="x", policy="nope")


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
    g = guard(rule_handler)
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


def test_cache_hit_and_counters() -> None:
    h = Counting(rule_handler)
    g = guard(h)
    first = g.check(prompt="a bomb")
    second = g.check(prompt="a bomb")
    assert h.calls == 1 and not first.cached and second.cached
    assert second.categories == first.categories
    assert g.stats()["cache"]["hits"] == 1 and g.stats()["cache"]["misses"] == 1
    g.check(prompt="a bomb", mode="fast")  # a different question
    g.check(prompt="a bomb", policy=Policy(ignore_categories=["Violence"]))
    assert h.calls == 3


def test_cache_ttl_expiry() -> None:
    h = Counting(rule_handler)
    g = guard(h, cache_ttl=0.2)
    g.check(prompt="x")
    time.sleep(0.25)
    g.check(prompt="x")
    assert h.calls == 2 and g.stats()["cache"]["expired"] == 1


def test_errors_are_not_cached() -> None:
    h = sequence(httpx.Response(500), completion("User Safety: safe"))
    g = guard(h, max_retries=0)
    assert g.check(prompt="x").error is ErrorCode.HTTP_STATUS
    assert g.check(prompt="x").safe


def test_images_change_the_cache_key() -> None:
    import io

    from PIL import Image

    def png(c: tuple[int, int, int]) -> bytes:
        b = io.BytesIO()
        Image.new("RGB", (8, 8), c).save(b, "PNG")
        return b.getvalue()

    h = Counting(rule_handler)
    g = guard(h)
    g.check(prompt="x", images=png((1, 1, 1)))
    g.check(prompt="x", images=png((2, 2, 2)))
    g.check(prompt="x", images=png((1, 1, 1)))
    assert h.calls == 2


async def test_async_single_flight() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.1)
        return rule_handler(request)

    count = {"n": 0}

    async def counted(request: httpx.Request) -> httpx.Response:
        count["n"] += 1
        return await slow(request)

    g = NemoGuard(
        "http://guard.test/v1", http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(counted))
    )
    verdicts = await asyncio.gather(*(g.acheck(prompt="same question") for _ in range(10)))
    assert count["n"] == 1 and all(v.safe for v in verdicts)
    assert g.stats()["cache"]["shared"] == 9


def test_sync_single_flight() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.1)
        return rule_handler(request)

    h = Counting(slow)
    g = guard(h)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: g.check(prompt="same"), range(8)))
    assert h.calls == 1 and all(r.safe for r in results)


# --- long input -------------------------------------------------------------------------------------------------


def test_long_input_checked_in_overlapping_windows() -> None:
    h = Counting(rule_handler)
    g = guard(h, windows=WindowOptions(max_tokens=64, overlap_tokens=8))
    text = ("lorem ipsum dolor sit amet " * 60) + " and then a bomb " + ("more words here " * 30)
    v = g.check(prompt=text)
    assert h.calls > 3 and v.calls == h.calls
    assert not v.safe and v.categories == ("Violence",)
    safe = g.check(prompt="lorem ipsum " * 200)
    assert safe.safe


def test_windows_cover_everything_with_overlap() -> None:
    from langchain_nemoguard import split_windows

    text = " ".join(f"w{i}" for i in range(2000))
    wins = split_windows(text, WindowOptions(max_tokens=100, overlap_tokens=20))
    assert all(len(w) <= 400 for w in wins)
    joined = " ".join(wins)
    assert all(f"w{i} " in joined + " " for i in range(2000))
    for a, b in itertools.pairwise(wins):
        assert a[-30:].split()[-1] in b  # the overlap carries the tail of the previous window


def test_cjk_counts_as_dense() -> None:
    from langchain_nemoguard import estimate_tokens

    assert estimate_tokens("炸弹" * 100) == 200
    assert estimate_tokens("abcd" * 100) == 100


# --- secrets ----------------------------------------------------------------------------------------------------


def test_api_key_never_printed(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def h(r: httpx.Request) -> httpx.Response:
        seen.append(r.headers.get("authorization", ""))
        return httpx.Response(401, json={"error": {"message": "bad key"}})

    g = NemoGuard(
        "http://guard.test/v1", api_key=SECRET, http_client=httpx.Client(transport=httpx.MockTransport(h))
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


async def test_think_audit_runs_beside_fast_verdicts() -> None:
    bodies: list[dict] = []

    def h(r: httpx.Request) -> httpx.Response:
        body = json.loads(r.content)
        bodies.append(body)
        if body["chat_template_kwargs"]["enable_thinking"]:
            return completion(
                "<think>\nIt asks for a weapon.\n</think>User Safety: unsafe\nSafety Categories: Violence"
            )
        return rule_handler(r)

    audits: list = []
    g = guard(h, mode="fast", audit_think=True, on_audit=audits.append)
    v = await g.acheck(prompt="a bomb")
    assert not v.safe
    assert v.reasoning is None  # the fast verdict does not wait for the trace
    await g.aflush_audits()
    assert [a.mode for a in audits] == ["think"]
    assert audits[0].reasoning == "It asks for a weapon."
    g.check(prompt="another bomb")
    g.flush_audits(timeout=5)
    assert len(audits) == 2
    assert [b["chat_template_kwargs"]["enable_thinking"] for b in bodies] == [False, True, False, True]


def test_policy_copy_recomputes_its_fingerprint() -> None:
    base = Policy(actions={"*": "block"})
    assert base.fingerprint  # computed and cached
    copy = base.model_copy(update={"actions": {"*": "rewrite"}})
    assert copy.fingerprint != base.fingerprint
    g = guard(rule_handler)
    assert g.check(prompt="a bomb", policy=base).action is Action.BLOCK
    assert g.check(prompt="a bomb", policy=copy).action is Action.REWRITE


def test_a_failing_audit_sink_never_breaks_the_check(caplog: pytest.LogCaptureFixture) -> None:
    def sink(v: object) -> None:
        raise RuntimeError("disk full")

    with caplog.at_level(logging.ERROR, logger="langchain_nemoguard"):
        v = guard(rule_handler, on_verdict=sink).check(prompt="a bomb")
    assert not v.safe
    assert "on_verdict callback failed" in caplog.text
