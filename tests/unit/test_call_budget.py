"""Long input, bounded: every call fits the served context, huge inputs are refused, planning never blocks."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from langchain_nemoguard import (
    ConfigurationError,
    InvalidInputError,
    NemoGuard,
    Policy,
    TransportOptions,
    WindowOptions,
)
from langchain_nemoguard.core.budget import (
    DEFAULT_MAX_CONTEXT_TOKENS,
    IMAGE_TOKENS,
    TURN_TOKENS,
    trim_history,
)
from langchain_nemoguard.core.errors import InputTooLargeError
from langchain_nemoguard.core.formats import Nemotron35Format
from langchain_nemoguard.core.windows import estimate_tokens, iter_segments, split_windows


class Recorder:
    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        answer = "User Safety: safe"
        if body["messages"][-1]["role"] == "assistant":
            answer += "\nResponse Safety: safe"
        return httpx.Response(
            200, json={"choices": [{"message": {"content": answer}, "finish_reason": "stop"}]}
        )


def guard(rec: Recorder, windows: WindowOptions | None = None, **kw: object) -> NemoGuard:
    return NemoGuard(
        "http://guard.test/v1",
        transport=TransportOptions(
            http_client=httpx.Client(transport=httpx.MockTransport(rec)),
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(rec)),
        ),
        windows=windows,
        **kw,  # type: ignore[arg-type]
    )


def call_tokens(body: dict) -> int:
    """An independent tally of one request: every text in it, the template and policy cost, the answer."""
    texts = 0
    images = 0
    for msg in body["messages"]:
        content = msg["content"]
        if isinstance(content, str):
            texts += estimate_tokens(content) + TURN_TOKENS
        else:
            for part in content:
                if part["type"] == "text":
                    texts += estimate_tokens(part["text"]) + TURN_TOKENS
                else:
                    images += IMAGE_TOKENS
    kwargs = {
        k: v for k, v in body["chat_template_kwargs"].items() if k in ("custom_policy", "custom_taxonomy")
    }
    return texts + images + Nemotron35Format().prompt_overhead_tokens(kwargs) + body["max_tokens"]


def words(n_tokens: int, seed: str = "w") -> str:
    """About ``n_tokens`` estimated tokens of letters (``"wab "``: four characters, one token)."""
    return " ".join(f"{seed}{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(n_tokens))


def test_the_default_context_is_what_nemoguard_serve_serves() -> None:
    from langchain_nemoguard.cli.vllm_server import ServeOptions

    assert DEFAULT_MAX_CONTEXT_TOKENS == ServeOptions().max_model_len == 4096


@pytest.mark.parametrize(
    ("prompt_tokens", "response_tokens"),
    [(1500, 1500), (2000, 2000), (100, 9000), (9000, 9000), (3000, None), (30, 30)],
)
@pytest.mark.parametrize("mode", ["fast", "categories", "think"])
def test_every_call_fits_the_served_context(
    prompt_tokens: int, response_tokens: int | None, mode: str
) -> None:
    rec = Recorder()
    g = guard(rec, mode=mode)
    response = words(response_tokens, "r") if response_tokens else None
    v = g.check(prompt=words(prompt_tokens, "p"), response=response)
    assert v.error is None and v.safe
    for body in rec.bodies:
        assert call_tokens(body) <= DEFAULT_MAX_CONTEXT_TOKENS, call_tokens(body)
    # the old bug: a full prompt window plus a full response window in one call (4096 tokens of text alone)
    if prompt_tokens == 2000 and response_tokens == 2000:
        assert len(rec.bodies) >= 2


def test_policy_text_and_history_count_against_the_context() -> None:
    rec = Recorder()
    long_policy = Policy(name="p", description=words(1200, "d"), disallowed=["weapons"])
    g = guard(rec, WindowOptions(context_turns=6), policy=long_policy, mode="think")
    history = []
    for i in range(3):
        history += [{"role": "user", "content": words(2000, f"u{i}")}, {"role": "assistant", "content": "ok"}]
    g.check(messages=[*history, {"role": "user", "content": words(1500, "q")}])
    assert rec.bodies
    for body in rec.bodies:
        assert len(body["messages"]) >= 3  # history was kept (trimmed), not dropped
        assert call_tokens(body) <= DEFAULT_MAX_CONTEXT_TOKENS


def test_a_context_too_small_for_the_policy_is_a_configuration_error() -> None:
    g = guard(Recorder(), policy=Policy(name="p", description=words(3800, "d"), disallowed=["x"]))
    with pytest.raises(ConfigurationError, match="max_context_tokens=4096 leaves"):
        g.check(prompt="hi")
    assert guard(Recorder(), WindowOptions(max_context_tokens=8192), policy=g.policy).check(prompt="hi").safe


def test_images_count_against_the_budget() -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "PNG")
    rec = Recorder()
    guard(rec).check(prompt=words(3300, "p"), images=[buf.getvalue()])
    assert len(rec.bodies) >= 2
    assert all(call_tokens(b) <= DEFAULT_MAX_CONTEXT_TOKENS for b in rec.bodies)


def test_trim_history_keeps_the_newest_pairs_and_alternation() -> None:
    history = (("user", "a" * 400), ("assistant", "b" * 400), ("user", "c" * 40), ("assistant", "d" * 40))
    assert trim_history(history, 60) == history[2:]
    assert trim_history(history, 10_000) == history
    cut = trim_history((("user", words(500)), ("assistant", words(500))), 100)
    assert [r for r, _ in cut] == ["user", "assistant"] and all(estimate_tokens(t) <= 40 for _, t in cut)


async def test_max_input_chars_refuses_before_any_call() -> None:
    rec = Recorder()
    g = guard(rec, WindowOptions(max_input_chars=1000))
    with pytest.raises(InputTooLargeError, match="max_input_chars"):
        g.check(prompt="x" * 600, response="y" * 600)
    with pytest.raises(InputTooLargeError):
        await g.acheck(prompt="x" * 1001)
    assert rec.bodies == []
    assert g.check(prompt="x" * 900).safe
    assert NemoGuard("http://g.test/v1").windows.max_input_chars == 400_000


@pytest.mark.parametrize("where", ["prompt", "response"])
async def test_lone_surrogates_are_a_typed_input_error(where: str) -> None:
    rec = Recorder()
    g = guard(rec)
    kw = {"prompt": "hi \ud800 there"} if where == "prompt" else {"prompt": "hi", "response": "a\udfffb"}
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        g.check(**kw)
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        await g.acheck(**kw)
    assert rec.bodies == []
    assert g.check(prompt="a real pair: \U0001f642").safe  # astral characters are fine


def test_window_splitting_is_linear() -> None:
    text = ("炸弹 lorem ipsum, dolor 123 " * 40_000)[:1_000_000]
    t0 = time.perf_counter()
    windows = split_windows(text, WindowOptions())
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, elapsed  # the old character-by-character loop took seconds here
    assert all(estimate_tokens(w) <= 2048 for w in windows)
    assert "".join(w[:20] for w in windows[:1]) == text[:20] and text.endswith(windows[-1])


def test_segments_cover_prompt_and_response_whole() -> None:
    prompt, response = words(5000, "p"), words(7000, "r")
    segments = list(iter_segments(prompt, response, budget=1000, options=WindowOptions()))
    judged = [s for s in segments if s.judge_prompt and s.response is None]
    assert " ".join(s.prompt for s in judged).split()[-1] == prompt.split()[-1]
    responses = [s.response for s in segments if s.response]
    assert responses[0].startswith("raa") and response.endswith(responses[-1])
    for s in segments:
        assert estimate_tokens(s.prompt) + estimate_tokens(s.response or "") <= 1000


async def test_planning_a_long_prompt_never_blocks_the_event_loop() -> None:
    g = guard(Recorder(), WindowOptions(max_input_chars=2_000_000))
    text = ("炸弹是危险的 words and more words " * 60_000)[:1_000_000]
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    from langchain_nemoguard.core.conversation import Conversation

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    plan = await g._aplan(Conversation(prompt=text), [], g.policy, "categories")
    done.set()
    await task
    assert len(plan.specs) > 100
    assert max(gaps) < 0.05, max(gaps)  # generous: the target (benchmarks/bench_parser.py) is a few ms


class LengthRefusing:
    """A server whose tokenizer is denser than the estimate: it refuses any call with over ``limit`` characters
    of judged text, as vLLM does (HTTP 400, "maximum context length"), and otherwise finds 'bomb'."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused = 0
        self.answered = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        texts = [m["content"] for m in body["messages"] if isinstance(m["content"], str)]
        if sum(len(t) for t in texts) > self.limit:
            self.refused += 1
            message = (
                "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
                "(4872 in the messages, 128 in the completion). Please reduce the length of the messages."
            )
            return httpx.Response(400, json={"error": {"message": message, "type": "BadRequestError"}})
        self.answered += 1
        user = body["messages"][0]["content"]
        answer = "User Safety: unsafe\nSafety Categories: Violence" if "bomb" in user else "User Safety: safe"
        return httpx.Response(
            200, json={"choices": [{"message": {"content": answer}, "finish_reason": "stop"}]}
        )


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_call_refused_for_length_is_judged_in_halves_not_lost(asynchronous: bool) -> None:
    server = LengthRefusing(limit=3000)
    g = guard(server, on_error="allow")  # type: ignore[arg-type]
    text = "xq zv " * 900 + "how to build a bomb " + "kw jx " * 300  # ~7,300 characters in one window
    v = await g.acheck(prompt=text) if asynchronous else g.check(prompt=text)
    assert server.refused >= 1 and server.answered >= 2
    assert not v.safe and v.error is None and v.categories == ("Violence",)
    clean = (
        await g.acheck(prompt=text.replace("bomb", "cake"))
        if asynchronous
        else g.check(prompt=text.replace("bomb", "cake"))
    )
    assert clean.safe and clean.error is None


def test_a_call_that_cannot_be_split_small_enough_is_an_error() -> None:
    server = LengthRefusing(limit=10)
    v = guard(server).check(prompt="harmless words " * 200)
    assert v.error is not None and not v.safe
    assert server.refused == 1 + 2 + 4 + 8  # at most MAX_SPLITS halvings
