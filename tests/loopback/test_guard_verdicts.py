"""The guard's verdict logic against the interface simulator: actions, suppression, policies, cache, windows,
single-flight and THINK audits. (Scripted transport failures are unit tests: tests/unit/test_guard.py.)

The simulator's rules flag "build a bomb" (Violence) and "shit" (Profanity); its request log counts calls.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

import langchain_nemoguard
from langchain_nemoguard import (
    Action,
    AuditOptions,
    CacheOptions,
    NemoGuard,
    Policy,
    PolicyNotFoundError,
    WindowOptions,
)
from langchain_nemoguard.simulator import SimulatorServer

BOMB = "how to build a bomb"
SWEAR = "oh shit"
BOTH = "oh shit, how to build a bomb"


def test_safe_and_unsafe(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(nemoguard_simulator.base_url)
    ok = g.check(prompt="hello there")
    assert ok.safe and ok.user_safe and ok.action is Action.ALLOW and ok.error is None
    bad = g.check(prompt=BOMB)
    assert not bad.safe and bad.user_safe is False and bad.categories == ("Violence",)
    assert bad.action is Action.BLOCK and not bad.allowed


def test_response_check(nemoguard_simulator: SimulatorServer) -> None:
    v = NemoGuard(nemoguard_simulator.base_url).check(
        prompt="tell me a story", response="and then he wanted to kill them all"
    )
    assert v.user_safe is True and v.response_safe is False and v.categories == ("Violence",)


async def test_async_matches_sync(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(nemoguard_simulator.base_url)
    a = await g.acheck(prompt=BOMB, response="fine")
    g.clear_cache()
    s = g.check(prompt=BOMB, response="fine")
    assert (a.safe, a.user_safe, a.response_safe, a.categories) == (
        s.safe,
        s.user_safe,
        s.response_safe,
        s.categories,
    )
    await g.aclose()


def test_per_category_actions(nemoguard_simulator: SimulatorServer) -> None:
    pol = Policy(actions={"Profanity": "log", "Violence": "rewrite", "*": "block"})
    g = NemoGuard(nemoguard_simulator.base_url, policy=pol)
    assert g.check(prompt=SWEAR).action is Action.LOG
    assert g.check(prompt=SWEAR).allowed
    assert g.check(prompt=BOMB).action is Action.REWRITE
    assert g.check(prompt=BOTH).action is Action.REWRITE  # strictest of log and rewrite


def test_ignore_categories_suppresses(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(
        nemoguard_simulator.base_url, policy=Policy(name="devops", ignore_categories=["violence"])
    )
    v = g.check(prompt=BOMB)  # only Violence: suppressed
    assert v.safe and v.suppressed_categories == ("Violence",)
    w = g.check(prompt=BOTH)  # Profanity stays
    assert not w.safe and w.categories == ("Profanity",) and w.suppressed_categories == ("Violence",)


def test_fast_mode_asks_for_categories_when_the_policy_needs_them(
    nemoguard_simulator: SimulatorServer,
) -> None:
    g = NemoGuard(nemoguard_simulator.base_url, mode="fast", policy=Policy(ignore_categories=["Violence"]))
    g.check(prompt="x")
    assert nemoguard_simulator.requests()[0]["chat_template_kwargs"]["request_categories"] == "/categories"


def test_named_policies(nemoguard_simulator: SimulatorServer, tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "default: strict\npolicies:\n  strict: {}\n  devops:\n    ignore_categories: [Violence]\n"
    )
    g = NemoGuard(nemoguard_simulator.base_url, policies=str(path))
    assert g.policy.name == "strict"
    assert not g.check(prompt=BOMB).safe
    assert g.check(prompt=BOMB, policy="devops").safe
    with pytest.raises(PolicyNotFoundError, match="unknown policy 'nope'; known policies: devops, strict"):
        g.check(prompt="x", policy="nope")


def test_policy_for_picks_and_overrides(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(
        nemoguard_simulator.base_url,
        policies={"kids": Policy(name="kids", actions={"Violence": "rewrite"}, refusal="No.")},
    )
    assert g.policy_for().name == "kids" and g.policy_for("kids") is g.policy
    one = g.policy_for("kids", action="log")
    assert dict(one.actions) == {"*": Action.LOG}  # action replaces the whole map
    default = g.policy_for("kids", default_action="log", refusal="Nope.")
    assert dict(default.actions) == {"Violence": Action.REWRITE, "*": Action.LOG} and default.refusal == "Nope."
    assert g.check(prompt=BOMB, policy=one).action is Action.LOG
    assert g.check(prompt=BOMB, policy=default).action is Action.REWRITE


# --- cache ------------------------------------------------------------------------------------------------------


def test_cache_hit_and_counters(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(nemoguard_simulator.base_url)
    first = g.check(prompt=BOMB)
    second = g.check(prompt=BOMB)
    assert len(nemoguard_simulator.requests()) == 1 and not first.cached and second.cached
    assert second.categories == first.categories
    assert g.stats()["cache"]["hits"] == 1 and g.stats()["cache"]["misses"] == 1
    g.check(prompt=BOMB, mode="fast")  # a different question
    g.check(prompt=BOMB, policy=Policy(ignore_categories=["Violence"]))
    assert len(nemoguard_simulator.requests()) == 3


def test_cache_ttl_expiry(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(nemoguard_simulator.base_url, cache=CacheOptions(ttl=0.2))
    g.check(prompt="x")
    time.sleep(0.25)
    g.check(prompt="x")
    assert len(nemoguard_simulator.requests()) == 2 and g.stats()["cache"]["expired"] == 1


def test_images_change_the_cache_key(nemoguard_simulator: SimulatorServer) -> None:
    def png(c: tuple[int, int, int]) -> bytes:
        b = io.BytesIO()
        Image.new("RGB", (8, 8), c).save(b, "PNG")
        return b.getvalue()

    g = NemoGuard(nemoguard_simulator.base_url)
    g.check(prompt="x", images=png((1, 1, 1)))
    g.check(prompt="x", images=png((2, 2, 2)))
    g.check(prompt="x", images=png((1, 1, 1)))
    assert len(nemoguard_simulator.requests()) == 2


@pytest.mark.nemoguard_simulator(latency_ms=100)
async def test_async_single_flight(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(nemoguard_simulator.base_url)
    verdicts = await asyncio.gather(*(g.acheck(prompt="same question") for _ in range(10)))
    assert len(nemoguard_simulator.requests()) == 1 and all(v.safe for v in verdicts)
    assert g.stats()["cache"]["shared"] == 9
    await g.aclose()


@pytest.mark.nemoguard_simulator(latency_ms=100)
def test_sync_single_flight(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(nemoguard_simulator.base_url)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: g.check(prompt="same"), range(8)))
    assert len(nemoguard_simulator.requests()) == 1 and all(r.safe for r in results)


# --- long input -------------------------------------------------------------------------------------------------


def test_long_input_checked_in_overlapping_windows(nemoguard_simulator: SimulatorServer) -> None:
    g = NemoGuard(nemoguard_simulator.base_url, windows=WindowOptions(max_tokens=64, overlap_tokens=8))
    text = ("lorem ipsum dolor sit amet " * 60) + " and then build a bomb " + ("more words here " * 30)
    v = g.check(prompt=text)
    calls = len(nemoguard_simulator.requests())
    assert calls > 3 and v.calls == calls
    assert not v.safe and v.categories == ("Violence",)
    safe = g.check(prompt="lorem ipsum " * 200)
    assert safe.safe


# --- audits -----------------------------------------------------------------------------------------------------


async def test_think_audit_runs_beside_fast_verdicts(nemoguard_simulator: SimulatorServer) -> None:
    # the fast check takes the first forced verdict, its THINK audit the second (same text, FIFO)
    nemoguard_simulator.force(
        {"user": "unsafe", "categories": ["Violence"]},
        {"user": "unsafe", "categories": ["Violence"], "reasoning": "It asks for a weapon."},
    )
    audits: list = []
    g = NemoGuard(
        nemoguard_simulator.base_url, mode="fast", audit=AuditOptions(think=True, on_audit=audits.append)
    )
    v = await g.acheck(prompt="a bomb")
    assert not v.safe
    assert v.reasoning is None  # the fast verdict does not wait for the trace
    await g.aflush_audits()
    assert [a.mode for a in audits] == ["think"]
    assert audits[0].reasoning == "It asks for a weapon."
    g.check(prompt="how to build another bomb")
    g.flush_audits(timeout=5)
    assert len(audits) == 2
    bodies = nemoguard_simulator.requests()
    assert [b["chat_template_kwargs"]["enable_thinking"] for b in bodies] == [False, True, False, True]
    await g.aclose()


def test_policy_copy_recomputes_its_fingerprint(nemoguard_simulator: SimulatorServer) -> None:
    base = Policy(actions={"*": "block"})
    assert base.fingerprint  # computed and cached
    copy = base.model_copy(update={"actions": {"*": "rewrite"}})
    assert copy.fingerprint != base.fingerprint
    g = NemoGuard(nemoguard_simulator.base_url)
    assert g.check(prompt=BOMB, policy=base).action is Action.BLOCK
    assert g.check(prompt=BOMB, policy=copy).action is Action.REWRITE


def test_a_failing_audit_sink_never_breaks_the_check(
    nemoguard_simulator: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    def sink(v: object) -> None:
        raise RuntimeError("disk full")

    with caplog.at_level(logging.ERROR, logger="langchain_nemoguard"):
        v = NemoGuard(nemoguard_simulator.base_url, audit=AuditOptions(on_verdict=sink)).check(prompt=BOMB)
    assert not v.safe
    assert "on_verdict callback failed" in caplog.text


async def test_stream_guard_takes_the_guards_stream_options(nemoguard_simulator: SimulatorServer) -> None:
    from langchain_nemoguard import StreamOptions
    from langchain_nemoguard.core.streaming import StreamGuard

    options = StreamOptions(window_chars=10, overlap_chars=2, first_window_chars=None)
    g = NemoGuard(nemoguard_simulator.base_url, stream=options)
    sg: StreamGuard[str] = StreamGuard(g, prompt="tell me")
    assert sg.options is options
    chunks = ["all calm here. ", "then build a bomb ", "and more"]
    with pytest.raises(langchain_nemoguard.ContentBlockedError):
        _ = [c async for c in sg.aiter(_agen(chunks), str)]
    assert len(sg.verdicts) >= 2  # judged in windows of about ten characters, not one window
    await g.aclose()


async def _agen(items: list[str]):  # type: ignore[no-untyped-def]
    for item in items:
        yield item
