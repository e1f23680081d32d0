"""``nemoguard bench``: what the guard client costs over a raw HTTP POST, measured in one run.

The interface simulator runs as a separate process (so it does not share the client's GIL), at 0 ms and at
20 ms added latency. The same request bodies go out three ways: ``guard.acheck`` (cache off, so every check
is a real request), a raw ``aiohttp`` POST (the fastest plain Python client: the baseline) and a raw
``httpx.AsyncClient`` POST. Reported: p50/p99 at concurrency 1, throughput at concurrency 64, the median of
``--repeats`` repetitions, plus a cache hit against a miss. Every figure is a ratio against the baseline
measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from ..core.formats import CallSpec
from ..core.guard import NemoGuard
from ..core.options import CacheOptions, TransportOptions
from ..simulator.process import SimulatorProcess

Sender = Callable[[int], Awaitable[Any]]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def _latency(send: Sender, n: int, offset: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await send(offset + i)
        times.append((time.perf_counter() - t0) * 1e3)
    return _pct(times, 0.5), _pct(times, 0.99)


async def _throughput(send: Sender, n: int, concurrency: int, offset: int) -> float:
    counter = iter(range(offset, offset + n))

    async def worker() -> None:
        for i in counter:
            await send(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def _measure(base_url: str, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    guard = NemoGuard(
        base_url, model="bench", cache=CacheOptions(size=0), transport=TransportOptions(max_concurrency=64)
    )
    prompts = [f"Question {i}: what is the capital of France?" for i in range(200_000)]

    def body(i: int) -> bytes:
        spec = CallSpec(prompt=prompts[i], max_tokens=128)
        return json.dumps(guard.format.build(spec, "bench"), separators=(",", ":")).encode()

    url = f"{base_url}/chat/completions"
    headers = {"Content-Type": "application/json"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    hx = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    async def raw_aiohttp(i: int) -> Any:
        async with session.post(url, data=body(i), headers=headers) as r:
            return json.loads(await r.read())

    async def raw_httpx(i: int) -> Any:
        r = await hx.post(url, content=body(i), headers=headers)
        return json.loads(r.content)

    async def guarded(i: int) -> Any:
        v = await guard.acheck(prompt=prompts[i])
        if v.error is not None:
            raise RuntimeError(f"benchmark check failed: {v.error_message}")
        return v

    senders: dict[str, Sender] = {"raw aiohttp": raw_aiohttp, "guard.acheck": guarded, "raw httpx": raw_httpx}
    results: dict[str, dict[str, list[float]]] = {k: {"p50": [], "p99": [], "rps": []} for k in senders}
    offset = 0
    try:
        for name in senders:  # warm-up: connections, imports, caches
            await _latency(senders[name], 20, offset)
            offset += 20
        for _ in range(args.repeats):
            for name, send in senders.items():
                p50, p99 = await _latency(send, args.latency_runs, offset)
                offset += args.latency_runs
                rps = await _throughput(send, args.requests, 64, offset)
                offset += args.requests
                results[name]["p50"].append(p50)
                results[name]["p99"].append(p99)
                results[name]["rps"].append(rps)
    finally:
        await session.close()
        await hx.aclose()
        await guard.aclose()
    return results


async def _cache_ratio(base_url: str, n: int = 300) -> dict[str, float]:
    """Median miss (a real request) against median hit (the same question again), each timed alone."""
    guard = NemoGuard(base_url, model="bench")
    try:
        misses, hits = [], []
        for i in range(n):
            t0 = time.perf_counter()
            await guard.acheck(prompt=f"cache probe {i}")
            misses.append((time.perf_counter() - t0) * 1e6)
        for i in range(n):
            t0 = time.perf_counter()
            v = await guard.acheck(prompt=f"cache probe {i}")
            hits.append((time.perf_counter() - t0) * 1e6)
            if not v.cached:
                raise RuntimeError("expected a cache hit")
    finally:
        await guard.aclose()
    miss, hit = statistics.median(misses), statistics.median(hits)
    return {"miss_us": round(miss, 1), "hit_us": round(hit, 1), "ratio": round(miss / hit, 1)}


def configure(p: argparse.ArgumentParser) -> None:
    """The ``bench`` options."""
    p.add_argument("--requests", type=int, default=400, help="requests per concurrency-64 throughput run")
    p.add_argument("--latency-runs", type=int, default=200, help="sequential requests per p50/p99 run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="write results JSON here")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table (and write JSON with ``--out``)."""
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "runs": {},
    }
    rows = []
    for latency in (0, 20):
        with SimulatorProcess(latency) as sim:
            res = asyncio.run(_measure(sim.base_url, args))
            if latency == 0:
                report["cache"] = asyncio.run(_cache_ratio(sim.base_url))
        med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in res.items()}
        base = med["raw aiohttp"]
        report["runs"][f"{latency}ms"] = {"raw": res, "median": med}
        for name, m in med.items():
            rows.append(
                [
                    f"{latency} ms",
                    name,
                    f"{m['p50']:.2f}",
                    f"{m['p99']:.2f}",
                    f"{m['p50'] - base['p50']:+.2f}",
                    f"{m['rps']:.0f}",
                    f"{m['rps'] / base['rps']:.0%}",
                ]
            )
    headers = ["sim latency", "client", "p50 ms", "p99 ms", "p50 vs aiohttp", "req/s @64", "vs aiohttp"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    c = report["cache"]
    print(
        f"\ncache: miss {c['miss_us']} us, hit {c['hit_us']} us -> a hit is {c['ratio']}x faster (median of 300)"
    )
    print(
        f"({args.repeats} repetitions; p50/p99 over {args.latency_runs} sequential requests, req/s over {args.requests})"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
