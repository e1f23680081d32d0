"""LangChain overhead: guarded vs unguarded chains, and hold-back streaming vs plain streaming.

A fake chat model that takes 300 ms (streamed as evenly spaced tokens) and the interface simulator answering
after 30 ms, both in this process, measured in the same run:

* invoke: unguarded; guarded sequential (input check, model, output check); guarded parallel (input check
  beside the model, output check after). Each also with ``check_output=False`` (input only), which is where
  ``parallel=True`` can hide the whole check.
* stream: time to first token and total time, unguarded vs hold-back (default windows).

Each figure: the p50 of ``--runs`` calls, then the median of ``--reps`` repetitions. Ratios are against the
unguarded baseline of the same run. Prints a table and writes ``benchmarks/results/langchain.json``.

    python benchmarks/bench_langchain.py [--runs 50] [--reps 3] [--model-ms 300] [--guard-ms 30]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import RESULTS as RESULTS_DIR
from _common import write_results
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from langchain_nemoguard import CacheOptions, NemoGuard
from langchain_nemoguard.simulator import SimulatorConfig, SimulatorServer

ANSWER = " ".join(["Paris is the capital of France and sits on the river Seine."] * 8)
RESULTS = RESULTS_DIR / "langchain.json"


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


async def p50(call: Callable[[], Awaitable[Any]], runs: int) -> float:
    await call()  # warm-up: connections, imports
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


async def stream_times(runnable: Runnable[Any, Any], prompt: str, runs: int) -> tuple[float, float]:
    async def once() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        async for _ in runnable.astream(prompt):
            if first is None:
                first = time.perf_counter() - t0
        return (first or 0.0) * 1e3, (time.perf_counter() - t0) * 1e3

    await once()
    samples = [await once() for _ in range(runs)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with SimulatorServer(SimulatorConfig(latency_ms=args.guard_ms)) as sim:
        print(
            f"guard endpoint: the nemoguard interface simulator (a test double) at {sim.base_url}",
            file=sys.stderr,
        )
        guard = NemoGuard(base_url=sim.base_url, cache=CacheOptions(size=0))  # every call reaches the endpoint
        model = SlowChat(delay_s=args.model_ms / 1000)
        prompt = "What is the capital of France?"
        chains: dict[str, Runnable[Any, Any]] = {
            "unguarded": model,
            "guarded sequential": guard.wrap(model),
            "guarded parallel": guard.wrap(model, parallel=True),
            "input-only sequential": guard.wrap(model, check_output=False),
            "input-only parallel": guard.wrap(model, check_output=False, parallel=True),
        }
        invoke: dict[str, list[float]] = {k: [] for k in chains}
        streams: dict[str, list[tuple[float, float]]] = {"unguarded": [], "hold-back": []}
        for rep in range(args.reps):
            for name, chain in chains.items():
                invoke[name].append(await p50(lambda c=chain: c.ainvoke(prompt), args.runs))
            streams["unguarded"].append(await stream_times(model, prompt, args.runs))
            streams["hold-back"].append(await stream_times(guard.wrap(model), prompt, args.runs))
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
        "stream": {
            k: {
                "ttft_ms": round(statistics.median(s[0] for s in v), 2),
                "total_ms": round(statistics.median(s[1] for s in v), 2),
            }
            for k, v in streams.items()
        },
    }
    ub, hb = result["stream"]["unguarded"], result["stream"]["hold-back"]
    result["stream"]["hold-back"]["total_ratio"] = round(hb["total_ms"] / ub["total_ms"], 4)
    result["stream"]["hold-back"]["ttft_added_ms"] = round(hb["ttft_ms"] - ub["ttft_ms"], 2)
    result["target_parallel_input_only_within_5pct"] = result["invoke_ratio"]["input-only parallel"] <= 1.05
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{'invoke (p50, median of reps)':<34}{'ms':>10}{'x unguarded':>14}",
        "-" * 58,
    ]
    for name, ms in result["invoke_p50_ms"].items():
        lines.append(f"{name:<34}{ms:>10.1f}{result['invoke_ratio'][name]:>14.3f}")
    lines += ["", f"{'stream':<34}{'TTFT ms':>10}{'total ms':>14}", "-" * 58]
    for name, s in result["stream"].items():
        lines.append(f"{name:<34}{s['ttft_ms']:>10.1f}{s['total_ms']:>14.1f}")
    ok = "met" if result["target_parallel_input_only_within_5pct"] else "MISSED"
    lines.append(f"\ntarget (input-only parallel <= 1.05x unguarded): {ok}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--model-ms", type=float, default=300.0)
    parser.add_argument("--guard-ms", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    ns = parser.parse_args()
    res = asyncio.run(main(ns))
    print(table(res))
    write_results(ns.out, res)
