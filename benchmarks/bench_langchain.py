"""LangChain overhead: guarded vs unguarded chains, and hold-back streaming vs plain streaming.

The interface simulator answering after ``--guard-ms`` (30 ms; in this process for invoke, in a child process for
the stream sections) and fake chat models, measured
in the same run:

* invoke (section ``invoke``): a model taking 300 ms; unguarded; guarded sequential (input check, model, output
  check); guarded parallel (input check beside the model, output check after). Each also with
  ``check_output=False`` (input only), which is where ``parallel=True`` can hide the whole check. Each figure:
  the p50 of ``--runs`` calls, then the median of ``--reps`` repetitions.
* steady stream (section ``stream``): a model streaming ``--tokens`` tokens ``--token-ms`` apart, through
  ``stream`` (sync) and ``astream`` (async), unguarded and through ``guard.wrap`` with the default windows. Per
  stream: time to first text, the longest gap between two releases, the total. The targets are computed from
  the same run: the guard latency (p50 of direct checks of a window of text), the time the unguarded model took
  to produce the first window, and the longest any window took to produce:

  - time to first text <= 2 x (guard latency + first-window generation);
  - longest gap <= 2 x guard latency + the largest window's generation time;
  - total <= 1.10 x unguarded total.

  Each figure: the median of ``--stream-runs`` streams, then the median of ``--reps`` repetitions.
* agent stream (section ``agent``, opt-in): the same model inside ``create_agent`` with ``NemoGuardMiddleware``,
  streamed with ``stream_mode="messages"``; the same three figures against the unguarded agent
  (:func:`agent_stream_section`).

Prints a table and writes ``benchmarks/results/langchain.json`` (invoke) and
``benchmarks/results/langchain_stream.json`` (stream, agent).

    python benchmarks/bench_langchain.py [--sections invoke,stream] [--runs 50] [--reps 3] [--model-ms 300]
        [--guard-ms 30] [--tokens 200] [--token-ms 5] [--stream-runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from _common import RESULTS as RESULTS_DIR
from _common import write_results
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from langchain_nemoguard import CacheOptions, NemoGuard, StreamOptions
from langchain_nemoguard.core.windows import HoldbackBuffer
from langchain_nemoguard.simulator import SimulatorConfig, SimulatorServer
from langchain_nemoguard.simulator.process import SimulatorProcess

ANSWER = " ".join(["Paris is the capital of France and sits on the river Seine."] * 8)
RESULTS = RESULTS_DIR / "langchain.json"
STREAM_RESULTS = RESULTS_DIR / "langchain_stream.json"
PROMPT = "What is the capital of France?"


class SlowChat(BaseChatModel):
    """Answers ``ANSWER`` after ``delay_s``; streams it as tokens spread evenly over the same time."""

    delay_s: float = 0.3

    @property
    def _llm_type(self) -> str:
        return "slow-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        time.sleep(self.delay_s)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(ANSWER))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        await asyncio.sleep(self.delay_s)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(ANSWER))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        words = ANSWER.split(" ")
        pause = self.delay_s / len(words)
        for i, word in enumerate(words):
            await asyncio.sleep(pause)
            yield ChatGenerationChunk(message=AIMessageChunk(content=word if i == 0 else " " + word))


class TokenChat(BaseChatModel):
    """Streams ``tokens`` word tokens (from ``ANSWER``, repeated) ``token_s`` apart, sync and async."""

    tokens: int = 200
    token_s: float = 0.005

    @property
    def _llm_type(self) -> str:
        return "token-fake"

    def words(self) -> list[str]:
        base = ANSWER.split(" ")
        return [("" if i == 0 else " ") + base[i % len(base)] for i in range(self.tokens)]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        time.sleep(self.tokens * self.token_s)
        return ChatResult(generations=[ChatGeneration(message=AIMessage("".join(self.words())))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for word in self.words():
            time.sleep(self.token_s)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager is not None:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for word in self.words():
            await asyncio.sleep(self.token_s)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager is not None:
                await run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk


async def p50(call: Callable[[], Awaitable[Any]], runs: int) -> float:
    await call()  # warm-up: connections, imports
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


# --- steady stream -----------------------------------------------------------------------------------------------


def _text_of(item: Any) -> str:
    """The text an item of a stream carries (a message chunk, a string, or a ``messages``-mode pair)."""
    if isinstance(item, tuple) and item:
        item = item[0]
    if isinstance(item, str):
        return item
    content = getattr(item, "content", "")
    return content if isinstance(content, str) else ""


class Sample:
    """One stream: when each piece of text reached the reader (ms after the call), and when it ended."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.releases: list[tuple[float, str]] = []
        self.end_ms = 0.0

    def seen(self, item: Any) -> None:
        text = _text_of(item)
        if text:
            self.releases.append(((time.perf_counter() - self.t0) * 1e3, text))

    def done(self) -> Sample:
        self.end_ms = (time.perf_counter() - self.t0) * 1e3
        return self

    @property
    def ttft_ms(self) -> float:
        return self.releases[0][0] if self.releases else self.end_ms

    @property
    def gap_ms(self) -> float:
        times = [t for t, _ in self.releases]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.releases)


def sync_sample(items: Iterable[Any]) -> Sample:
    sample = Sample()
    for item in items:
        sample.seen(item)
    return sample.done()


async def async_sample(items: AsyncIterator[Any]) -> Sample:
    sample = Sample()
    async for item in items:
        sample.seen(item)
    return sample.done()


def window_generation(unguarded: Sample, options: StreamOptions) -> tuple[float, float]:
    """How long the unguarded model took to produce the first window, and the longest any window took
    (windows cut as the hold-back buffer cuts them)."""
    buf: HoldbackBuffer[None] = HoldbackBuffer(options)
    times: list[float] = []
    last = 0.0
    for t, text in unguarded.releases:
        if buf.push(None, text) is not None:
            times.append(t - last)
            last = t
    if buf.flush() is not None and unguarded.releases:
        times.append(unguarded.releases[-1][0] - last)
    return times[0], max(times)


def _figures(samples: list[Sample]) -> dict[str, float]:
    return {
        "ttft_ms": statistics.median(s.ttft_ms for s in samples),
        "gap_ms": statistics.median(s.gap_ms for s in samples),
        "total_ms": statistics.median(s.end_ms for s in samples),
    }


def _median_of(reps: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in reps), 2) for k in reps[0]}


def _verdict(unguarded: dict[str, float], guarded: dict[str, float], ref: dict[str, float]) -> dict[str, Any]:
    """The three targets of a guarded stream against the references of the same run."""
    g, first, largest = ref["guard_ms"], ref["first_window_ms"], ref["largest_window_ms"]
    targets = {
        "ttft_ms": 2 * (g + first),
        "gap_ms": 2 * g + largest,
        "total_ms": 1.10 * unguarded["total_ms"],
    }
    return {
        k: {"target": round(v, 2), "measured": guarded[k], "met": guarded[k] <= v} for k, v in targets.items()
    }


def _stream_block(
    reps: dict[str, list[dict[str, float]]], refs: list[dict[str, float]]
) -> dict[str, Any]:
    unguarded, guarded = _median_of(reps["unguarded"]), _median_of(reps["guarded"])
    ref = _median_of(refs)
    return {
        "unguarded": unguarded,
        "guarded": guarded,
        "reference": ref,
        "total_ratio": round(guarded["total_ms"] / unguarded["total_ms"], 4),
        "targets": _verdict(unguarded, guarded, ref),
    }


def _guard_ms(check: Callable[[], Any], runs: int = 10) -> float:
    check()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        check()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


async def _aguard_ms(check: Callable[[], Awaitable[Any]], runs: int = 10) -> float:
    await check()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await check()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def stream_section(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    """Sync ``stream`` and async ``astream``, unguarded vs ``guard.wrap(model)`` with the default windows."""
    model = TokenChat(tokens=args.tokens, token_s=args.token_ms / 1000)
    options = StreamOptions()
    window_text = ANSWER[: options.overlap_chars + options.first_window * 2]
    per_mode: dict[str, dict[str, list[dict[str, float]]]] = {
        m: {"unguarded": [], "guarded": []} for m in ("sync", "async")
    }
    refs: dict[str, list[dict[str, float]]] = {"sync": [], "async": []}

    def reference(unguarded: list[Sample], guard_ms: float) -> dict[str, float]:
        pairs = [window_generation(s, options) for s in unguarded]
        return {
            "guard_ms": guard_ms,
            "first_window_ms": statistics.median(p[0] for p in pairs),
            "largest_window_ms": statistics.median(p[1] for p in pairs),
        }

    async def async_rep() -> None:
        guard = NemoGuard(base_url=base_url, cache=CacheOptions(size=0))
        guarded = guard.wrap(model)
        g_ms = await _aguard_ms(lambda: guard.acheck(prompt=PROMPT, response=window_text))
        got: dict[str, list[Sample]] = {"unguarded": [], "guarded": []}
        for runnable in (model, guarded):
            await async_sample(runnable.astream(PROMPT))  # warm-up
        for _ in range(args.stream_runs):  # interleaved: drift on a shared machine hits both alike
            for name, runnable in (("unguarded", model), ("guarded", guarded)):
                got[name].append(await async_sample(runnable.astream(PROMPT)))
        _check_complete(got)
        for name, samples in got.items():
            per_mode["async"][name].append(_figures(samples))
        refs["async"].append(reference(got["unguarded"], g_ms))
        await guard.aclose()

    for rep in range(args.reps):
        with NemoGuard(base_url=base_url, cache=CacheOptions(size=0)) as guard:
            guarded = guard.wrap(model)
            g_ms = _guard_ms(lambda: guard.check(prompt=PROMPT, response=window_text))
            got: dict[str, list[Sample]] = {"unguarded": [], "guarded": []}
            for runnable in (model, guarded):
                sync_sample(runnable.stream(PROMPT))  # warm-up
            for _ in range(args.stream_runs):
                for name, runnable in (("unguarded", model), ("guarded", guarded)):
                    got[name].append(sync_sample(runnable.stream(PROMPT)))
            _check_complete(got)
            for name, samples in got.items():
                per_mode["sync"][name].append(_figures(samples))
            refs["sync"].append(reference(got["unguarded"], g_ms))
        asyncio.run(async_rep())
        print(f"stream repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    return {
        "settings": {
            "tokens": args.tokens,
            "token_ms": args.token_ms,
            "guard_ms": args.guard_ms,
            "stream_runs": args.stream_runs,
            "reps": args.reps,
            "windows": options.window_sizes(6),
            "answer_chars": len("".join(model.words())),
        },
        **{mode: _stream_block(per_mode[mode], refs[mode]) for mode in ("sync", "async")},
    }


def _check_complete(got: dict[str, list[Sample]]) -> None:
    """A guarded stream that lost or reordered text would make its timings meaningless: refuse to report."""
    want = got["unguarded"][0].text
    for name, samples in got.items():
        for s in samples:
            if s.text != want:
                raise RuntimeError(f"{name} stream did not deliver the whole answer in order")


def agent_stream_section(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    """An agent's answer streamed with ``stream_mode="messages"``: unguarded vs ``NemoGuardMiddleware``.

    Opt-in (``--sections ...,agent``). Measures whatever the middleware does: with per-message hold-back the
    whole answer arrives at once at the end (time to first text = total); with window-by-window agent
    streaming the figures approach the wrapped model's. The targets are the stream section's.
    """
    from langchain.agents import create_agent

    from langchain_nemoguard import NemoGuardMiddleware

    model = TokenChat(tokens=args.tokens, token_s=args.token_ms / 1000)
    options = StreamOptions()
    window_text = ANSWER[: options.overlap_chars + options.first_window * 2]
    reps: dict[str, list[dict[str, float]]] = {"unguarded": [], "guarded": []}
    refs: list[dict[str, float]] = []
    inputs = {"messages": [{"role": "user", "content": PROMPT}]}
    for rep in range(args.reps):
        with NemoGuard(base_url=base_url, cache=CacheOptions(size=0)) as guard:
            agents = {
                "unguarded": create_agent(model=model, tools=[]),
                "guarded": create_agent(model=model, tools=[], middleware=[NemoGuardMiddleware(guard)]),
            }
            g_ms = _guard_ms(lambda: guard.check(prompt=PROMPT, response=window_text))
            got: dict[str, list[Sample]] = {"unguarded": [], "guarded": []}
            for agent in agents.values():
                sync_sample(agent.stream(inputs, stream_mode="messages"))  # warm-up
            for _ in range(args.stream_runs):
                for name, agent in agents.items():
                    got[name].append(sync_sample(agent.stream(inputs, stream_mode="messages")))
            _check_complete(got)
            for name, samples in got.items():
                reps[name].append(_figures(samples))
            pairs = [window_generation(s, options) for s in got["unguarded"]]
            refs.append(
                {
                    "guard_ms": g_ms,
                    "first_window_ms": statistics.median(p[0] for p in pairs),
                    "largest_window_ms": statistics.median(p[1] for p in pairs),
                }
            )
        print(f"agent repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    return _stream_block(reps, refs)


async def invoke_section(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    """ainvoke of the 300 ms model, unguarded vs guarded."""
    guard = NemoGuard(base_url=base_url, cache=CacheOptions(size=0))  # every call reaches the endpoint
    model = SlowChat(delay_s=args.model_ms / 1000)
    prompt = PROMPT
    chains: dict[str, Runnable[Any, Any]] = {
        "unguarded": model,
        "guarded sequential": guard.wrap(model),
        "guarded parallel": guard.wrap(model, parallel=True),
        "input-only sequential": guard.wrap(model, check_output=False),
        "input-only parallel": guard.wrap(model, check_output=False, parallel=True),
    }
    invoke: dict[str, list[float]] = {k: [] for k in chains}
    for rep in range(args.reps):
        for name, chain in chains.items():
            invoke[name].append(await p50(lambda c=chain: c.ainvoke(prompt), args.runs))
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    await guard.aclose()
    base = statistics.median(invoke["unguarded"])
    result: dict[str, Any] = {
        "settings": {
            "runs": args.runs,
            "reps": args.reps,
            "model_ms": args.model_ms,
            "guard_ms": args.guard_ms,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "guard_endpoint": "nemoguard interface simulator (test double)",
        },
        "invoke_p50_ms": {k: round(statistics.median(v), 2) for k, v in invoke.items()},
        "invoke_ratio": {k: round(statistics.median(v) / base, 4) for k, v in invoke.items()},
    }
    result["target_parallel_input_only_within_5pct"] = result["invoke_ratio"]["input-only parallel"] <= 1.05
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{'invoke (p50, median of reps)':<34}{'ms':>10}{'x unguarded':>14}",
        "-" * 58,
    ]
    for name, ms in result["invoke_p50_ms"].items():
        lines.append(f"{name:<34}{ms:>10.1f}{result['invoke_ratio'][name]:>14.3f}")
    ok = "met" if result["target_parallel_input_only_within_5pct"] else "MISSED"
    lines.append(f"\ntarget (input-only parallel <= 1.05x unguarded): {ok}")
    return "\n".join(lines)


def stream_table(result: dict[str, Any]) -> str:
    st = result["settings"]
    lines = [
        f"steady stream: {st['tokens']} tokens {st['token_ms']} ms apart ({st['answer_chars']} characters), "
        f"simulator at {st['guard_ms']} ms; windows {st['windows']}...; median of {st['stream_runs']} streams, "
        f"median of {st['reps']} repetitions",
    ]
    for mode in ("sync", "async", "agent"):
        block = result.get(mode)
        if block is None:
            continue
        ref = block["reference"]
        lines += [
            "",
            f"{mode} (guard latency {ref['guard_ms']:.1f} ms, first window made in {ref['first_window_ms']:.1f} ms, "
            f"largest window in {ref['largest_window_ms']:.1f} ms)",
            f"{'':<22}{'unguarded':>12}{'guarded':>12}{'target':>12}{'':>8}",
            "-" * 66,
        ]
        names = {"ttft_ms": "first text ms", "gap_ms": "longest gap ms", "total_ms": "total ms"}
        for key, label in names.items():
            t = block["targets"][key]
            ok = "met" if t["met"] else "MISSED"
            lines.append(
                f"{label:<22}{block['unguarded'][key]:>12.1f}{block['guarded'][key]:>12.1f}{t['target']:>12.1f}{ok:>8}"
            )
        lines.append(f"{'total x unguarded':<22}{'':>12}{block['total_ratio']:>12.3f}{'1.100':>12}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"invoke", "stream", "agent"}
    if unknown:
        raise SystemExit(f"unknown sections: {sorted(unknown)} (choose from invoke, stream, agent)")
    if "invoke" in sections:
        with SimulatorServer(SimulatorConfig(latency_ms=args.guard_ms)) as sim:
            print(
                f"guard endpoint: the nemoguard interface simulator (a test double) at {sim.base_url}",
                file=sys.stderr,
            )
            res = asyncio.run(invoke_section(args, sim.base_url))
        print(table(res))
        write_results(args.out, res)
    if sections & {"stream", "agent"}:
        # the guard endpoint in a process of its own, as a real one is: an in-process simulator would take the
        # GIL from the model's token loop on every check and bill the stream for the server's work
        with SimulatorProcess(latency_ms=args.guard_ms) as proc:
            print(f"stream sections: the simulator in a child process at {proc.base_url}", file=sys.stderr)
            streamed: dict[str, Any] = {}
            if "stream" in sections:
                streamed = stream_section(args, proc.base_url)
            if "agent" in sections:
                streamed.setdefault(
                    "settings",
                    {
                        "tokens": args.tokens,
                        "token_ms": args.token_ms,
                        "guard_ms": args.guard_ms,
                        "stream_runs": args.stream_runs,
                        "reps": args.reps,
                        "windows": StreamOptions().window_sizes(6),
                        "answer_chars": len("".join(TokenChat(tokens=args.tokens).words())),
                    },
                )
                streamed["agent"] = agent_stream_section(args, proc.base_url)
            streamed["settings"].update(
                python=platform.python_version(),
                machine=platform.machine(),
                guard_endpoint="nemoguard interface simulator (test double), in a child process",
            )
            print(stream_table(streamed))
            write_results(args.stream_out, streamed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default="invoke,stream", help="invoke, stream, agent (comma-separated)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--model-ms", type=float, default=300.0)
    parser.add_argument("--guard-ms", type=float, default=30.0)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--token-ms", type=float, default=5.0)
    parser.add_argument("--stream-runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--stream-out", type=Path, default=STREAM_RESULTS)
    run(parser.parse_args())
