"""nemoguard server against the core it wraps: what the HTTP service adds, in one run on one machine.

Processes: the interface simulator answering after 20 ms, ``nemoguard server`` (no keys, loopback, its
Prometheus metrics on, as deployed) in front of it, a control server, and this script. The same prompts go
three ways:

* **core**: ``await guard.acheck(prompt=...)`` in this process, against the simulator (the baseline);
* **service**: ``POST /v1/moderations {"input": ...}`` to the service with a keep-alive ``aiohttp`` session,
  the service doing the same ``acheck`` against the same simulator;
* **control**: the same POST to the thinnest possible HTTP wrapper of ``acheck`` (a bare ASGI function under
  the same uvicorn settings, no routing, no limits, no keys, a one-field answer): what any HTTP hop costs on
  this machine, so that ``service - control`` is the service's own code.

Every prompt is unique, so neither guard's verdict cache answers. Reported: p50/p99 at concurrency 1 and
throughput at concurrency 64, interleaved over ``--repeats`` repetitions; figures are medians, each ratio
paired within its repetition. Targets (issue 12): the service adds at most 1 ms p50, and keeps at least 90%
of the core's throughput at 64 concurrent requests.

    .venv/bin/python benchmarks/bench_service.py [--repeats 5] [--latency-runs 200] [--requests 1200]

Writes ``benchmarks/results/service.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from _common import RESULTS as RESULTS_DIR
from _common import child_process, free_port, machine, write_results

from langchain_nemoguard import NemoGuard
from langchain_nemoguard.cli.bench import load_warning, machine_load

RESULTS = RESULTS_DIR / "service.json"
SIM_LATENCY_MS = 20.0
CONCURRENCY = 64
TARGET_ADDED_P50_MS = 1.0
TARGET_THROUGHPUT_RATIO = 0.9
CONTROL_APP = """
import json, os
from langchain_nemoguard import NemoGuard

guard = NemoGuard(os.environ["BENCH_SIM_URL"])


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await guard.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/health":
        out = b"{}"
    else:
        verdict = await guard.acheck(prompt=json.loads(body)["input"])
        out = json.dumps({"results": [{"flagged": not verdict.safe}]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
"""
Sender = Callable[[str], Awaitable[None]]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def _latency(send: Sender, prompts: Sequence[str]) -> tuple[float, float]:
    times = []
    for p in prompts:
        t0 = time.perf_counter()
        await send(p)
        times.append((time.perf_counter() - t0) * 1e3)
    return _pct(times, 0.5), _pct(times, 0.99)


async def _throughput(send: Sender, prompts: Sequence[str]) -> float:
    pending = iter(prompts)

    async def worker() -> None:
        for p in pending:
            await send(p)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(prompts) / (time.perf_counter() - t0)


async def _bench(sim_url: str, service_url: str, control_url: str, args: argparse.Namespace) -> dict[str, Any]:
    guard = NemoGuard(sim_url)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY))
    url = f"{service_url}/v1/moderations"
    headers = {"Content-Type": "application/json"}
    counter = iter(range(10**9))

    def prompts(n: int) -> list[str]:
        return [f"Question {next(counter)}: what is the capital of France?" for _ in range(n)]

    async def core(prompt: str) -> None:
        v = await guard.acheck(prompt=prompt)
        if v.error is not None:
            raise RuntimeError(f"core check failed: {v.error_message}")

    async def post(target: str, prompt: str) -> None:
        body = json.dumps({"input": prompt}).encode()
        async with session.post(target, data=body, headers=headers) as r:
            data = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{target} answered {r.status}: {data[:200]!r}")
            json.loads(data)

    async def service(prompt: str) -> None:
        await post(url, prompt)

    async def control(prompt: str) -> None:
        await post(f"{control_url}/v1/moderations", prompt)

    senders: dict[str, Sender] = {"core": core, "service": service, "control": control}
    runs: dict[str, dict[str, list[float]]] = {k: {"p50": [], "p99": [], "rps": []} for k in senders}
    try:
        for send in senders.values():  # warm-up: connections, imports, first-request paths
            await _latency(send, prompts(30))
            await _throughput(send, prompts(CONCURRENCY * 2))
        for rep in range(1, args.repeats + 1):
            for name, send in senders.items():  # interleaved, so drift hits both alike
                print(f"repetition {rep}/{args.repeats}: {name}", file=sys.stderr, flush=True)
                p50, p99 = await _latency(send, prompts(args.latency_runs))
                rps = await _throughput(send, prompts(args.requests))
                runs[name]["p50"].append(p50)
                runs[name]["p99"].append(p99)
                runs[name]["rps"].append(rps)
    finally:
        await session.close()
        await guard.aclose()
    added = [s - c for s, c in zip(runs["service"]["p50"], runs["core"]["p50"], strict=True)]
    ratio = [s / c for s, c in zip(runs["service"]["rps"], runs["core"]["rps"], strict=True)]
    hop = [s - c for s, c in zip(runs["control"]["p50"], runs["core"]["p50"], strict=True)]
    own = [s - c for s, c in zip(runs["service"]["p50"], runs["control"]["p50"], strict=True)]
    hop_ratio = [s / c for s, c in zip(runs["control"]["rps"], runs["core"]["rps"], strict=True)]
    med = statistics.median
    table = {
        name: {"p50_ms": med(r["p50"]), "p99_ms": med(r["p99"]), "rps_c64": med(r["rps"]), "runs": r}
        for name, r in runs.items()
    }
    return {
        "simulator_latency_ms": SIM_LATENCY_MS,
        "concurrency": CONCURRENCY,
        "cases": table,
        "added_p50_ms": {"median": med(added), "runs": added},
        "throughput_ratio": {"median": med(ratio), "runs": ratio},
        "control": {
            "hop_added_p50_ms": {"median": med(hop), "runs": hop},
            "service_over_control_p50_ms": {"median": med(own), "runs": own},
            "hop_throughput_ratio": {"median": med(hop_ratio), "runs": hop_ratio},
        },
        "targets": {
            "added_p50_max_ms": TARGET_ADDED_P50_MS,
            "added_p50_met": med(added) <= TARGET_ADDED_P50_MS,
            "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
            "throughput_met": med(ratio) >= TARGET_THROUGHPUT_RATIO,
        },
    }


def _print(result: dict[str, Any]) -> None:
    print(f"\nsimulator at {SIM_LATENCY_MS:.0f} ms; medians of {len(result['added_p50_ms']['runs'])} repetitions")
    print(f"{'path':<10}{'p50 ms (c=1)':>14}{'p99 ms (c=1)':>14}{'req/s (c=64)':>14}")
    for name, row in result["cases"].items():
        print(f"{name:<10}{row['p50_ms']:>14.2f}{row['p99_ms']:>14.2f}{row['rps_c64']:>14.1f}")
    print()
    a, r, t = result["added_p50_ms"], result["throughput_ratio"], result["targets"]
    spread_a = f"{min(a['runs']):.2f}..{max(a['runs']):.2f}"
    spread_r = f"{min(r['runs']):.2f}..{max(r['runs']):.2f}"
    print(
        f"\nservice adds {a['median']:.2f} ms p50 [{spread_a}] "
        f"(target <= {t['added_p50_max_ms']:.1f} ms: {'met' if t['added_p50_met'] else 'MISSED'})"
    )
    print(
        f"service keeps x{r['median']:.2f} of the core's throughput at c={CONCURRENCY} [{spread_r}] "
        f"(target >= {t['throughput_ratio_min']:.2f}: {'met' if t['throughput_met'] else 'MISSED'})"
    )
    c = result["control"]
    print(
        f"control (a bare ASGI wrapper of acheck): the HTTP hop alone adds {c['hop_added_p50_ms']['median']:.2f} ms "
        f"p50 and keeps x{c['hop_throughput_ratio']['median']:.2f} of the throughput; the service's own code adds "
        f"{c['service_over_control_p50_ms']['median']:+.2f} ms p50 over that control"
    )
    if result.get("load_warning"):
        print(result["load_warning"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-runs", type=int, default=200, help="sequential requests per p50/p99 run")
    parser.add_argument("--requests", type=int, default=1200, help="requests per concurrency-64 run")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_before = machine_load()
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("NEMOGUARD_SERVER_API_KEYS", None)
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp_name:
        tmp = Path(tmp_name)
        sim_port, service_port, control_port = free_port(), free_port(), free_port()
        sim_url = f"http://127.0.0.1:{sim_port}/v1"
        service_url = f"http://127.0.0.1:{service_port}"
        control_url = f"http://127.0.0.1:{control_port}"
        (tmp / "control_app.py").write_text(CONTROL_APP)
        control_cmd = [sys.executable, "-m", "uvicorn", "control_app:app", "--port", str(control_port)]
        control_cmd += ["--no-access-log", "--log-level", "warning", "--app-dir", str(tmp)]
        sim_cmd = [sys.executable, "-m", "langchain_nemoguard.simulator", "--port", str(sim_port)]
        sim_cmd += ["--latency-ms", str(SIM_LATENCY_MS)]
        service_cmd = [sys.executable, "-c", "from langchain_nemoguard.cli.main import main; raise SystemExit(main())"]
        service_cmd += ["server", "--base-url", sim_url, "--port", str(service_port)]
        with (
            child_process(sim_cmd, f"http://127.0.0.1:{sim_port}/health", "simulator", tmp, env),
            child_process(service_cmd, f"{service_url}/health", "service", tmp, env),
            child_process(control_cmd, f"{control_url}/health", "control", tmp, {**env, "BENCH_SIM_URL": sim_url}),
        ):
            result = asyncio.run(_bench(sim_url, service_url, control_url, args))
    result["machine"] = machine(load_before=load_before["load"], load_after=machine_load()["load"])
    result["load_warning"] = load_warning(load_before)
    result["settings"] = {"repeats": args.repeats, "latency_runs": args.latency_runs, "requests_c64": args.requests}
    _print(result)
    write_results(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
