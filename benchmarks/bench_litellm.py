"""LiteLLM proxy CPU per request: no guardrail, a sleep-only control guardrail, and NemoGuardrail.

Each case is its own ``litellm --config`` proxy process (same mock model, same settings), and the three (up to
six with ``--no-otel-sdk`` and ``--baseline``) are loaded *at the same moment*, so that whatever else the machine
is doing hits every case alike: in each round every proxy gets a batch of ``--requests`` requests from 200 concurrent clients, all
batches starting together. A proxy's CPU is read from ``/proc/<pid>/stat`` (user + sys, all threads and any
child) when its batch starts and when its last answer arrives - idle to idle, so the CPU seconds are exactly
those of its batch - and divided by the batch's size. Throughput is the batch's size over the time it took
(proxies share the machine's cores while all are loaded). Medians over the rounds; comparisons are medians of
the per-round differences and ratios.

Cases (all ``default_on``, ``mode: [pre_call, post_call]``):

* ``none``: no guardrail - what LiteLLM costs without one;
* ``control``: a guardrail that only sleeps the guard's latency in pre_call and in post_call (LiteLLM's
  unified ``apply_guardrail`` interface): what LiteLLM costs for running *any* guardrail;
* ``nemoguard``: NemoGuardrail against the interface simulator (a subprocess) answering after the same latency;
* ``control, no otel sdk`` / ``nemoguard, no otel sdk`` (``--no-otel-sdk``): the same with ``opentelemetry.sdk``
  made unimportable in the proxy (an import blocker on its ``PYTHONPATH``), as on an install without
  ``opentelemetry-sdk``;
* ``nemoguard @ baseline`` (``--baseline REV``): the guardrail as of a git revision (``git archive``), to
  measure a change against the code before it in the same run.

The figure of merit is NemoGuardrail's CPU per request above the control's (target: at most 0.3 ms), and the
throughput ratio at 200 concurrent.

    .venv/bin/python benchmarks/bench_litellm.py [--rounds 5] [--requests 600] [--no-otel-sdk] [--baseline REV]

Writes ``benchmarks/results/litellm.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from _common import RESULTS as RESULTS_DIR
from _common import ROOT, free_port, machine, write_results

from langchain_nemoguard.simulator.process import stop_process

RESULTS = RESULTS_DIR / "litellm.json"
MASTER_KEY = "sk-bench-" + "0" * 32
GUARD_LATENCY_MS = 30.0
CONCURRENCY = 200
TARGET_OVER_CONTROL_MS = 0.3
# A control guardrail that only waits the guard's latency, through LiteLLM's unified interface (pre_call with the
# request's texts, post_call with the response's).
SLEEP_GUARDRAIL = """
import asyncio
from litellm.integrations.custom_guardrail import CustomGuardrail


class SleepGuardrail(CustomGuardrail):
    async def apply_guardrail(self, inputs, request_data, input_type, logging_obj=None):
        await asyncio.sleep(SECONDS)
        return inputs
"""
# Makes ``opentelemetry.sdk`` unimportable (as on an install without opentelemetry-sdk) without touching the venv.
NO_OTEL_SDK = """
import importlib.abc
import sys


class _BlockOtelSdk(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry.sdk" or name.startswith("opentelemetry.sdk."):
            raise ImportError(f"{name} blocked by the benchmark (as without opentelemetry-sdk)")
        return None


sys.meta_path.insert(0, _BlockOtelSdk())
"""
HOOKS = ["pre_call", "post_call"]


@dataclass(frozen=True)
class Case:
    name: str
    guardrail: dict[str, Any] | None
    no_otel_sdk: bool = False
    source: Path | None = None  # the package code this proxy imports (None: this checkout)


def _cases(guard_url: str, no_otel_sdk: bool, baseline: Path | None = None) -> list[Case]:
    ours = {
        "guardrail_name": "nemoguard",
        "litellm_params": {
            "guardrail": "litellm_hook.NemoGuardrail",
            "mode": HOOKS,
            "default_on": True,
            "api_base": guard_url,
        },
    }
    control = {
        "guardrail_name": "sleep-ctl",
        "litellm_params": {"guardrail": "sleep_guardrail.SleepGuardrail", "mode": HOOKS, "default_on": True},
    }
    cases = [Case("none", None), Case("control", control), Case("nemoguard", ours)]
    if baseline is not None:
        cases.append(Case("nemoguard @ baseline", ours, source=baseline))
    if no_otel_sdk:
        cases += [Case("control, no otel sdk", control, True), Case("nemoguard, no otel sdk", ours, True)]
    return cases


def _config(case: Case) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_list": [
            {"model_name": "mock-fast", "litellm_params": {"model": "openai/mock-fast", "mock_response": "Fine."}}
        ],
        "litellm_settings": {"set_verbose": False},
        "general_settings": {"master_key": MASTER_KEY},
    }
    if case.guardrail is not None:
        config["guardrails"] = [case.guardrail]
    return config


# --- CPU of a process tree -------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _cpu_seconds(pid: int) -> float:
    """user + sys of ``pid`` and its live descendants (all threads), in seconds."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        todo += _children(p)
    return total / _TICK


# --- processes -------------------------------------------------------------------------------------------------------


def _wait_ready(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up (see its log)")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not become ready within {timeout} s")


@contextmanager
def _process(args: Sequence[str], cwd: Path, env: dict[str, str], log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    with (cwd / f"{log_name}.log").open("w") as log:
        proc = subprocess.Popen(list(args), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            stop_process(proc)


# --- load ------------------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """One proxy's share of a round: ``n`` requests sent by ``concurrency`` clients, then the proxy idles."""

    url: str
    pid: int
    n: int
    sent: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


async def _client(session: aiohttp.ClientSession, batch: Batch, counter: Iterator[int]) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    while batch.sent < batch.n:
        batch.sent += 1
        # each prompt unique, so no cache anywhere answers
        content = f"What is the capital of France? (request {next(counter)})"
        body = json.dumps({"model": "mock-fast", "messages": [{"role": "user", "content": content}]})
        t0 = time.perf_counter()
        try:
            async with session.post(batch.url, data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    batch.errors.append(f"HTTP {r.status}")
                    continue
        except (TimeoutError, aiohttp.ClientError) as exc:
            batch.errors.append(repr(exc))
            continue
        batch.latencies.append((time.perf_counter() - t0) * 1e3)


async def _one_batch(batch: Batch, counter: Iterator[int]) -> dict[str, float]:
    """Run the batch; CPU is read from idle (before) to idle (its last answer), so it is exactly its n requests.

    Each batch opens its own connections (the proxy closes idle keep-alive connections between rounds).
    """
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        cpu0, t0 = _cpu_seconds(batch.pid), time.perf_counter()
        await asyncio.gather(*(_client(session, batch, counter) for _ in range(CONCURRENCY)))
        elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(batch.pid) - cpu0
    if batch.errors:
        raise RuntimeError(f"{batch.url}: {len(batch.errors)} failed requests: {batch.errors[:3]}")
    return {
        "requests": batch.n,
        "cpu_s": cpu,
        "cpu_ms_per_request": cpu * 1e3 / batch.n,
        "rps": batch.n / elapsed,
        "p50_ms": statistics.median(batch.latencies),
    }


async def _bench(procs: dict[str, tuple[int, str]], rounds: int, n: int, warmup: int) -> dict[str, Any]:
    counter = itertools.count()
    per_round: dict[str, list[dict[str, float]]] = {name: [] for name in procs}

    async def round_(size: int) -> dict[str, dict[str, float]]:
        # every proxy's batch starts at the same moment: noise on the machine hits all cases alike
        batches = {name: Batch(f"{url}/v1/chat/completions", pid, size) for name, (pid, url) in procs.items()}
        results = await asyncio.gather(*(_one_batch(b, counter) for b in batches.values()))
        return dict(zip(batches, results, strict=True))

    await round_(warmup)  # imports, first-request paths
    for _ in range(rounds):
        for name, stats in (await round_(n)).items():
            per_round[name].append(stats)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in per_round[name])

    cases = {
        name: {
            "cpu_ms_per_request": med(name, "cpu_ms_per_request"),
            "rps_c200": med(name, "rps"),
            "p50_ms_c200": med(name, "p50_ms"),
            "rounds": per_round[name],
        }
        for name in procs
    }

    def over(a: str, b: str) -> dict[str, float]:
        # per-round differences (same moment, same load), then their median: robust to drift between rounds
        pairs = list(zip(per_round[a], per_round[b], strict=True))
        return {
            "cpu_ms_per_request": statistics.median(x["cpu_ms_per_request"] - y["cpu_ms_per_request"] for x, y in pairs),
            "cpu_ratio": statistics.median(x["cpu_ms_per_request"] / y["cpu_ms_per_request"] for x, y in pairs),
            "throughput_ratio": statistics.median(x["rps"] / y["rps"] for x, y in pairs),
        }

    comparisons = {
        "control vs none": over("control", "none"),
        "nemoguard vs none": over("nemoguard", "none"),
        "nemoguard vs control": over("nemoguard", "control"),
    }
    if "nemoguard, no otel sdk" in procs:
        comparisons["control, no otel sdk vs control"] = over("control, no otel sdk", "control")
        comparisons["nemoguard, no otel sdk vs nemoguard"] = over("nemoguard, no otel sdk", "nemoguard")
        comparisons["nemoguard, no otel sdk vs control, no otel sdk"] = over(
            "nemoguard, no otel sdk", "control, no otel sdk"
        )
    if "nemoguard @ baseline" in procs:
        comparisons["nemoguard @ baseline vs control"] = over("nemoguard @ baseline", "control")
        comparisons["nemoguard vs nemoguard @ baseline"] = over("nemoguard", "nemoguard @ baseline")
    ours = comparisons["nemoguard vs control"]["cpu_ms_per_request"]
    return {
        "cases": cases,
        "comparisons": comparisons,
        "target": {
            "nemoguard_over_control_max_ms": TARGET_OVER_CONTROL_MS,
            "nemoguard_over_control_ms": ours,
            "met": ours <= TARGET_OVER_CONTROL_MS,
        },
    }


def _print(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(
        f"\nproxy CPU per request, {s['concurrency']} concurrent per proxy, all proxies loaded at once; "
        f"medians of {s['rounds']} rounds of {s['requests_per_round']} requests; guard latency {GUARD_LATENCY_MS:.0f} ms"
    )
    print(f"{'case':<26}{'CPU ms/req':>12}{'req/s':>10}{'p50 ms':>10}")
    for name, row in result["cases"].items():
        print(f"{name:<26}{row['cpu_ms_per_request']:>12.2f}{row['rps_c200']:>10.1f}{row['p50_ms_c200']:>10.0f}")
    print(f"\n{'comparison':<48}{'CPU ms/req':>12}{'CPU ratio':>11}{'req/s ratio':>13}")
    for name, c in result["comparisons"].items():
        print(f"{name:<48}{c['cpu_ms_per_request']:>+12.2f}{c['cpu_ratio']:>11.2f}{c['throughput_ratio']:>13.2f}")
    t = result["target"]
    print(
        f"\nNemoGuardrail above the control: {t['nemoguard_over_control_ms']:+.2f} ms CPU per request "
        f"(target <= {t['nemoguard_over_control_max_ms']} ms: {'met' if t['met'] else 'MISSED'})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=600, help="requests per proxy per round")
    parser.add_argument("--warmup", type=int, default=200, help="requests per proxy in the warm-up round")
    parser.add_argument("--no-otel-sdk", action="store_true", help="add the cases without opentelemetry.sdk")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="add the guardrail as of this git revision (e.g. a commit before a change) as its own case",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    base_env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    pythonpath = os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="bench-litellm-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        (tmp / "sleep_guardrail.py").write_text(SLEEP_GUARDRAIL.replace("SECONDS", str(GUARD_LATENCY_MS / 1e3)))
        blocker = tmp / "no_otel_sdk"
        blocker.mkdir()
        (blocker / "sitecustomize.py").write_text(NO_OTEL_SDK)
        sim_port = free_port()
        guard_url = f"http://127.0.0.1:{sim_port}/v1"
        sim_cmd = [sys.executable, "-m", "langchain_nemoguard.simulator", "--port", str(sim_port)]
        sim_cmd += ["--latency-ms", str(GUARD_LATENCY_MS)]
        sim_env = {**base_env, "PYTHONPATH": os.pathsep.join([str(ROOT), pythonpath])}
        sim = stack.enter_context(_process(sim_cmd, tmp, sim_env, "simulator"))
        baseline = None
        if args.baseline:
            baseline = tmp / "baseline"
            baseline.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.baseline, "langchain_nemoguard", "litellm_hook"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
        started: list[tuple[Case, subprocess.Popen[bytes], str]] = []
        for i, case in enumerate(_cases(guard_url, args.no_otel_sdk, baseline)):
            port = free_port()
            config = tmp / f"config-{i}.yaml"
            config.write_text(yaml.safe_dump(_config(case)))
            path = [str(blocker)] if case.no_otel_sdk else []
            code = str(case.source or ROOT)
            env = {**base_env, "PYTHONPATH": os.pathsep.join([*path, code, str(tmp), pythonpath])}
            cmd = [sys.executable, "-c", "from litellm_cli.main import proxy_server; proxy_server()"]
            cmd += ["--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
            proc = stack.enter_context(_process(cmd, tmp, env, f"proxy-{i}"))
            started.append((case, proc, f"http://127.0.0.1:{port}"))
        _wait_ready(f"http://127.0.0.1:{sim_port}/health", sim, "simulator")
        for case, proc, url in started:
            _wait_ready(f"{url}/health/liveliness", proc, f"proxy {case.name!r}")
        procs = {case.name: (proc.pid, url) for case, proc, url in started}
        result = asyncio.run(_bench(procs, args.rounds, args.requests, args.warmup))
    result["guard_latency_ms"] = GUARD_LATENCY_MS
    result["machine"] = machine(load_average=os.getloadavg())
    result["settings"] = {
        "concurrency": CONCURRENCY,
        "rounds": args.rounds,
        "requests_per_round": args.requests,
        "warmup_requests": args.warmup,
        "hooks": HOOKS,
        "baseline": args.baseline,
    }
    _print(result)
    write_results(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
