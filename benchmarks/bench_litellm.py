"""LiteLLM proxy with and without the NemoGuard guardrail: added latency and throughput.

One proxy (``litellm --config``) serves every case, so guarded and unguarded requests share the process, the
mock models and the machine; the guardrails are opt-in and a request names the one it wants. The guard
endpoint is the interface simulator (a subprocess) answering after 30 ms. Each prompt is unique so the guard's
verdict cache never answers.

Cases: ``none`` vs ``pre_call`` on an instant mock model, ``none`` vs ``during_call`` on a 300 ms mock model
(``mock_delay``). Concurrency 1 gives p50/p99 latency, concurrency 32 the throughput. Medians of 3 repetitions.

    .venv/bin/python benchmarks/bench_litellm.py [--requests 60] [--repeats 3]

Writes ``benchmarks/results/litellm.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from _common import RESULTS as RESULTS_DIR
from _common import ROOT, child_process, free_port, machine, write_results

RESULTS = RESULTS_DIR / "litellm.json"
MASTER_KEY = "sk-bench-" + "0" * 32
SLEEP_GUARDRAIL = """
import asyncio
from litellm.integrations.custom_guardrail import CustomGuardrail


class SleepGuardrail(CustomGuardrail):
    async def apply_guardrail(self, inputs, request_data, input_type, logging_obj=None):
        await asyncio.sleep(SECONDS)
        return inputs
"""
GUARD_LATENCY_MS = 30.0
SLOW_MODEL_S = 0.3
TARGET_SLACK_MS = 5.0


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    guardrail: str | None


CASES = (
    Case("fast / none", "mock-fast", None),
    Case("fast / pre_call", "mock-fast", "ng-pre"),
    # Control: a guardrail that only sleeps the guard's latency - LiteLLM's own cost of running any guardrail.
    Case("fast / sleep-30ms ctl", "mock-fast", "sleep-ctl"),
    Case("slow / none", "mock-slow", None),
    Case("slow / during_call", "mock-slow", "ng-during"),
)


@dataclass
class Stats:
    p50_ms: float
    p99_ms: float
    rps: float


def _config(guard_url: str) -> dict[str, Any]:
    common = {"guardrail": "litellm_hook.NemoGuardrail", "api_base": guard_url, "default_on": False}
    return {
        "model_list": [
            {
                "model_name": "mock-fast",
                "litellm_params": {"model": "openai/mock-fast", "mock_response": "Fine."},
            },
            {
                "model_name": "mock-slow",
                "litellm_params": {
                    "model": "openai/mock-slow",
                    "mock_response": "Fine.",
                    "mock_delay": SLOW_MODEL_S,
                },
            },
        ],
        "guardrails": [
            {"guardrail_name": "ng-pre", "litellm_params": {**common, "mode": "pre_call"}},
            {"guardrail_name": "ng-during", "litellm_params": {**common, "mode": "during_call"}},
            {
                "guardrail_name": "sleep-ctl",
                "litellm_params": {"guardrail": "sleep_guardrail.SleepGuardrail", "mode": "pre_call"},
            },
        ],
        "litellm_settings": {"set_verbose": False},
        "general_settings": {"master_key": MASTER_KEY},
    }


async def _run(
    client: httpx.AsyncClient, url: str, case: Case, n: int, concurrency: int, counter: Iterator[int]
) -> Stats:
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        body: dict[str, Any] = {
            "model": case.model,
            "messages": [
                {"role": "user", "content": f"What is the capital of France? (request {next(counter)})"}
            ],
        }
        if case.guardrail:
            body["guardrails"] = [case.guardrail]
        async with sem:
            t0 = time.perf_counter()
            r = await client.post(url, json=body)
            latencies.append((time.perf_counter() - t0) * 1e3)
        if r.status_code != 200:
            raise RuntimeError(f"{case.name}: HTTP {r.status_code}: {r.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Stats(p50_ms=statistics.median(latencies), p99_ms=q[98], rps=n / elapsed)


async def _guard_latency(guard_url: str, n: int) -> float:
    """p50 of a raw POST to the guard endpoint: the latency a pre_call check cannot avoid."""
    body = {"model": "nvidia/nemotron-3.5-content-safety", "messages": [{"role": "user", "content": "hello"}]}
    times = []
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(n):
            body["messages"][0]["content"] = f"hello {i}"
            t0 = time.perf_counter()
            await client.post(f"{guard_url}/chat/completions", json=body)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


async def _bench(proxy_url: str, guard_url: str, n: int, repeats: int) -> dict[str, Any]:
    url = f"{proxy_url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    counter = itertools.count()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    runs: dict[str, dict[str, list[Stats]]] = {c.name: {"c1": [], "c32": []} for c in CASES}
    async with httpx.AsyncClient(timeout=60, headers=headers, limits=limits) as client:
        for case in CASES:  # warm-up: imports, connections, first-request paths
            await _run(client, url, case, 8, 4, counter)
        for _ in range(repeats):
            for case in CASES:  # interleaved, so drift hits every case alike
                runs[case.name]["c1"].append(await _run(client, url, case, n, 1, counter))
                runs[case.name]["c32"].append(await _run(client, url, case, n * 4, 32, counter))
    guard_p50 = await _guard_latency(guard_url, 30)

    def med(stats: list[Stats], field: str) -> float:
        return statistics.median(getattr(s, field) for s in stats)

    table = {
        name: {
            "p50_ms": med(r["c1"], "p50_ms"),
            "p99_ms": med(r["c1"], "p99_ms"),
            "rps_c32": med(r["c32"], "rps"),
            "runs": {k: [asdict(s) for s in v] for k, v in r.items()},
        }
        for name, r in runs.items()
    }
    pre_added = table["fast / pre_call"]["p50_ms"] - table["fast / none"]["p50_ms"]
    during_added = table["slow / during_call"]["p50_ms"] - table["slow / none"]["p50_ms"]
    return {
        "guard_latency_ms_configured": GUARD_LATENCY_MS,
        "guard_latency_p50_ms_measured": guard_p50,
        "cases": table,
        "added": {
            "pre_call_p50_ms": pre_added,
            "pre_call_p99_ms": table["fast / pre_call"]["p99_ms"] - table["fast / none"]["p99_ms"],
            # what a guardrail that does nothing but wait the guard's latency adds: LiteLLM's floor
            "control_sleep_p50_ms": table["fast / sleep-30ms ctl"]["p50_ms"] - table["fast / none"]["p50_ms"],
            "pre_call_vs_control_p50_ms": table["fast / pre_call"]["p50_ms"]
            - table["fast / sleep-30ms ctl"]["p50_ms"],
            "during_call_p50_ms": during_added,
            "during_call_p99_ms": table["slow / during_call"]["p99_ms"] - table["slow / none"]["p99_ms"],
            "pre_call_throughput_ratio": table["fast / pre_call"]["rps_c32"]
            / table["fast / none"]["rps_c32"],
            "during_call_throughput_ratio": table["slow / during_call"]["rps_c32"]
            / table["slow / none"]["rps_c32"],
        },
        "targets": {
            "pre_call_p50_max_ms": guard_p50 + TARGET_SLACK_MS,
            "pre_call_met": pre_added <= guard_p50 + TARGET_SLACK_MS,
            "during_call_p50_max_ms": TARGET_SLACK_MS,
            "during_call_met": during_added <= TARGET_SLACK_MS,
        },
    }


def _print(result: dict[str, Any]) -> None:
    print(
        f"\nguard endpoint: simulator at {GUARD_LATENCY_MS:.0f} ms (measured p50 {result['guard_latency_p50_ms_measured']:.1f} ms)"
    )
    print(f"{'case':<24}{'p50 ms (c=1)':>14}{'p99 ms (c=1)':>14}{'req/s (c=32)':>14}")
    for name, row in result["cases"].items():
        print(f"{name:<24}{row['p50_ms']:>14.1f}{row['p99_ms']:>14.1f}{row['rps_c32']:>14.1f}")
    a, t = result["added"], result["targets"]
    print(
        f"\npre_call adds {a['pre_call_p50_ms']:.1f} ms p50 / {a['pre_call_p99_ms']:.1f} ms p99 "
        f"(target <= {t['pre_call_p50_max_ms']:.1f} ms: {'met' if t['pre_call_met'] else 'MISSED'}); "
        f"throughput x{a['pre_call_throughput_ratio']:.2f}"
    )
    print(
        f"  control (a guardrail that only sleeps {GUARD_LATENCY_MS:.0f} ms) adds {a['control_sleep_p50_ms']:.1f} ms p50; "
        f"NemoGuard adds {a['pre_call_vs_control_p50_ms']:+.1f} ms over that control"
    )
    print(
        f"during_call adds {a['during_call_p50_ms']:.1f} ms p50 / {a['during_call_p99_ms']:.1f} ms p99 "
        f"(target <= {t['during_call_p50_max_ms']:.1f} ms: {'met' if t['during_call_met'] else 'MISSED'}); "
        f"throughput x{a['during_call_throughput_ratio']:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=60, help="requests per case at concurrency 1 (x4 at 32)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    with tempfile.TemporaryDirectory(prefix="bench-litellm-") as tmp_name:
        tmp = Path(tmp_name)
        sim_port, proxy_port = free_port(), free_port()
        guard_url = f"http://127.0.0.1:{sim_port}/v1"
        (tmp / "config.yaml").write_text(yaml.safe_dump(_config(guard_url)))
        (tmp / "sleep_guardrail.py").write_text(
            SLEEP_GUARDRAIL.replace("SECONDS", str(GUARD_LATENCY_MS / 1e3))
        )
        sim_cmd = [sys.executable, "-m", "langchain_nemoguard.simulator", "--port", str(sim_port)]
        sim_cmd += ["--latency-ms", str(GUARD_LATENCY_MS)]
        proxy_cmd = [sys.executable, "-c", "from litellm_cli.main import proxy_server; proxy_server()"]
        proxy_cmd += ["--config", str(tmp / "config.yaml"), "--host", "127.0.0.1", "--port", str(proxy_port)]
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        with (
            child_process(sim_cmd, f"http://127.0.0.1:{sim_port}/health", "simulator", tmp, env),
            child_process(proxy_cmd, f"{proxy_url}/health/liveliness", "proxy", tmp, env),
        ):
            result = asyncio.run(_bench(proxy_url, guard_url, args.requests, args.repeats))
    result["machine"] = machine()
    result["settings"] = {
        "requests_c1": args.requests,
        "requests_c32": args.requests * 4,
        "repeats": args.repeats,
    }
    _print(result)
    write_results(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
