"""``nemoguard bench``: what the guard client costs over a raw HTTP POST, measured in one run.

The interface simulator runs as a separate process (so it does not share the client's GIL), at 0 ms and at
20 ms added latency. The same request bodies go out three ways: ``guard.acheck`` (cache off, so every check
is a real request), a raw ``aiohttp`` POST (the fastest plain Python client: the baseline) and a raw
``httpx.AsyncClient`` POST. Reported: p50/p99 at concurrency 1, throughput at concurrency 64, the median of
``--repeats`` repetitions with their spread (min..max, each ratio paired within its repetition), plus a cache
hit against a miss. Every figure is a ratio against the baseline measured in the same run on the same machine,
printed beside the machine's CPU count and load averages, with a warning when other load is high: on a busy
machine the throughput ratio swings from run to run, and the spread shows how much.
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
from ..core.simulator_mark import LABEL
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


async def _measure(
    base_url: str, args: argparse.Namespace, label: str
) -> dict[str, dict[str, list[float]]]:
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
        for rep in range(1, args.repeats + 1):
            for name, send in senders.items():
                _progress(f"simulator at {label}, repetition {rep}/{args.repeats}: {name}")
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


async def _cache_ratio(base_url: str, n: int) -> dict[str, float]:
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    """The ``bench`` options."""
    p.add_argument(
        "--requests", type=_positive, default=400, help="requests per concurrency-64 throughput run"
    )
    p.add_argument(
        "--latency-runs", type=_positive, default=200, help="sequential requests per p50/p99 run"
    )
    p.add_argument("--repeats", type=_positive, default=3, help="repetitions; the table shows their spread")
    p.add_argument(
        "--cache-probes", type=_positive, default=300, help="checks timed for the cache hit/miss ratio"
    )
    p.add_argument("--out", default=None, help="write results JSON here")
    p.set_defaults(func=run_bench)


# A 1-minute load average above this share of the CPUs means other work competes with the benchmark.
BUSY_LOAD_PER_CPU = 0.5
WHY_IT_SWINGS = (
    "Why figures swing: the client and the simulator are two processes competing for the CPUs; at concurrency 64 "
    "they saturate them, so any other load takes CPU from one of the two and moves the throughput ratio (on a "
    "shared 2-core machine runs ranged from 19% to 114%). The [min..max] spread over the repetitions shows how "
    "much; compare rows of one run only, and trust a run on a quiet machine."
)


def machine_load() -> dict[str, Any]:
    """CPU count and load averages (1, 5, 15 min; None where the platform has none)."""
    cpus = os.cpu_count() or 1
    try:
        load: tuple[float, float, float] | None = os.getloadavg()
    except OSError:
        load = None
    return {"cpus": cpus, "load": [round(x, 2) for x in load] if load else None}


def load_warning(load: dict[str, Any]) -> str | None:
    """A warning when the 1-minute load average says the machine is busy (None when it is quiet or unknown)."""
    if not load["load"]:
        return None
    one, cpus = load["load"][0], load["cpus"]
    if one <= BUSY_LOAD_PER_CPU * cpus:
        return None
    return (
        f"WARNING: the machine is busy before the benchmark starts (load average {one:.2f} on {cpus} CPUs): "
        "other processes compete with the client and the simulator, and the ratios will swing. Rerun on a "
        "quiet machine for figures to quote."
    )


def spread(values: list[float], fmt: str) -> str:
    """``median [min-max]`` of ``values``, each formatted with ``fmt``."""
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} [{fmt.format(min(values))}..{fmt.format(max(values))}]"


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table (and write JSON with ``--out``)."""
    before = machine_load()
    print(
        f"nemoguard bench: guard endpoint = the {LABEL.upper()} (in its own process); "
        "the figures are client overhead, not the model's speed.",
        file=sys.stderr,
    )
    warning = load_warning(before)
    if warning:
        print(warning, file=sys.stderr)
    report: dict[str, Any] = {
        "endpoint": LABEL,
        "machine": {"cpus": before["cpus"], "python": sys.version.split()[0], "load_before": before["load"]},
        "settings": {
            "repeats": args.repeats,
            "latency_runs": args.latency_runs,
            "requests": args.requests,
            "concurrency": 64,
        },
        "runs": {},
    }
    rows = []
    for latency in (0, 20):
        with SimulatorProcess(latency) as sim:
            res = asyncio.run(_measure(sim.base_url, args, label=f"{latency} ms"))
            if latency == 0:
                _progress(f"cache hit vs miss: {args.cache_probes} probes each")
                report["cache"] = asyncio.run(_cache_ratio(sim.base_url, args.cache_probes))
        med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in res.items()}
        base = res["raw aiohttp"]
        # paired per repetition: each ratio compares two clients measured back to back in the same repetition
        added = {k: [p - b for p, b in zip(d["p50"], base["p50"], strict=True)] for k, d in res.items()}
        ratio = {k: [r / b for r, b in zip(d["rps"], base["rps"], strict=True)] for k, d in res.items()}
        report["runs"][f"{latency}ms"] = {
            "raw": res,
            "median": med,
            "p50_added_ms": {k: _summary(v) for k, v in added.items()},
            "rps_ratio": {k: _summary(v) for k, v in ratio.items()},
        }
        for name, m in med.items():
            baseline = name == "raw aiohttp"
            rows.append(
                [
                    f"{latency} ms",
                    name + (" (baseline)" if baseline else ""),
                    f"{m['p50']:.2f}",
                    f"{m['p99']:.2f}",
                    "-" if baseline else spread(added[name], "{:+.2f}"),
                    spread(res[name]["rps"], "{:.0f}"),
                    "100%" if baseline else spread([100 * r for r in ratio[name]], "{:.0f}%"),
                ]
            )
    after = machine_load()
    report["machine"]["load_after"] = after["load"]
    headers = [
        "sim latency",
        "client",
        "p50 ms",
        "p99 ms",
        "p50 added vs aiohttp, ms",
        "req/s @64",
        "req/s vs aiohttp",
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print(f"guard endpoint: {LABEL} (client overhead only)")
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    c = report["cache"]
    print(
        f"\ncache: miss {c['miss_us']} us, hit {c['hit_us']} us -> a hit is {c['ratio']}x faster "
        f"(median of {args.cache_probes})"
    )
    print(
        f"medians of {args.repeats} repetitions, [min..max] beside them; p50/p99 over {args.latency_runs} "
        f"sequential requests, req/s over {args.requests} at concurrency 64"
    )
    print(f"machine: {before['cpus']} CPUs, load average {_load_text(before)} before, {_load_text(after)} after")
    print(WHY_IT_SWINGS)
    if warning:
        print(warning)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _load_text(load: dict[str, Any]) -> str:
    return "/".join(f"{x:.2f}" for x in load["load"]) if load["load"] else "unknown"


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)
