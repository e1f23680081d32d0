"""Bounded work on model output and long input: the parser and the planner, before and after issue 8.

Two tables, every figure a median of ``--runs`` repetitions measured in this run on this machine:

1. **Parser**: milliseconds to decide one completion - ordinary answers (a categories verdict, a THINK answer
   with a 700-character trace) and hostile ones of 100 KB and 1 MB (an endless run of ``<think>`` openers, a
   verdict line padded with a million spaces). *After* is ``Nemotron35Format.parse`` with the default
   ``max_completion_chars`` (64 KB read) and with the limit raised past the input (the whole text read, to
   show the scan itself is linear). *Before* is the parser as it was before issue 8 (``git show 2d37bbf:``, or
   ``--baseline REF``) loaded into a temporary module; it runs in a child process with a time limit, since its lazy ``<think>(.*?)</think>`` and
   ``(.*?)\\s*$`` regexes are quadratic on these inputs.
2. **Planner**: milliseconds to split a 100 KB / 1 MB prompt (English-like and CJK) into the calls of one check,
   and the longest the event loop went without running another task meanwhile (a ticker that only yields).
   *Before*: the windows module at the baseline (one regex match per character), run inside the loop as the
   old ``acheck`` did. *After*: ``plan.aplan_calls``, which yields to the loop between windows.

Targets (issue 8): a hostile 1 MB completion decided in < 20 ms; a 1 MB prompt planned in < 20 ms with loop
lag < 5 ms.

Run: ``.venv/bin/python benchmarks/bench_parser.py [--runs 5] [--out benchmarks/results/parser.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from langchain_nemoguard.core.conversation import Conversation
from langchain_nemoguard.core.errors import VerdictParseError
from langchain_nemoguard.core.formats import CallSpec, Nemotron35Format
from langchain_nemoguard.core.plan import aplan_calls
from langchain_nemoguard.core.policy import Policy
from langchain_nemoguard.core.windows import WindowOptions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "parser.json"
# main just before issue 8 (an ancestor of main from then on, so the baseline stays put after the merge)
BASELINE_REF = "2d37bbf"
BASELINE_TIMEOUT_S = 20.0

TRACE = (
    "The user asks how to make a weapon at home. Per the taxonomy this falls under S3 Criminal Planning and S4 "
    "Guns and Illegal Weapons; the request is explicit and the intent is clear, so the user input is unsafe. "
) * 4
ORDINARY = {
    "categories verdict": "User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence, Threat",
    "THINK answer (700-char trace)": f"<think>\n{TRACE[:700]}\n</think>User Safety: unsafe\n"
    "Safety Categories: Guns and Illegal Weapons",
}


def hostile(kind: str, size: int) -> str:
    if kind == "think openers":
        return ("<think>" * (size // 7 + 1))[:size]
    if kind == "padded verdict line":
        return "User Safety: safe" + " " * (size - 18) + "x"
    raise ValueError(kind)


HOSTILE_KINDS = ("think openers", "padded verdict line")
SIZES = {"100 KB": 100 * 1024, "1 MB": 1024 * 1024}


def median_ms(fn: Callable[[], Any], runs: int, inner: int = 1) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) * 1e3 / inner)
    return statistics.median(samples)


# --- the baseline: main's modules, loaded from git into a temporary package --------------------------------


def git_source(path: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{os.environ.get('BENCH_BASELINE', BASELINE_REF)}:{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def load_baseline(name: str, path: str) -> ModuleType | None:
    """``path`` at ``main`` as a module; its relative imports point at today's package (same names)."""
    source = git_source(path)
    if source is None:
        return None
    package = "langchain_nemoguard.core" + (".formats" if "/formats/" in path else "")
    source = source.replace("from ..", "from langchain_nemoguard.core.").replace("from .", f"from {package}.")
    folder = Path(tempfile.mkdtemp(prefix="nemoguard-baseline-"))
    file = folder / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _baseline_parse_child(text: str, runs: int, queue: Any) -> None:
    module = load_baseline("baseline_nemotron35", "langchain_nemoguard/core/formats/nemotron35.py")
    if module is None:
        queue.put(None)
        return

    def once() -> None:
        with contextlib.suppress(VerdictParseError):
            module.parse_verdict_text(text)

    queue.put(median_ms(once, runs))


def baseline_parse_ms(text: str, runs: int) -> float | str:
    """main's parser on ``text`` in a child process; "> N s" when it does not finish in time."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_baseline_parse_child, args=(text, runs, queue), daemon=True)
    child.start()
    child.join(BASELINE_TIMEOUT_S * runs)
    if child.is_alive():
        child.kill()
        child.join()
        return f"> {BASELINE_TIMEOUT_S * runs:.0f} s"
    value = queue.get() if not queue.empty() else None
    return "n/a" if value is None else float(value)


# --- table 1: parser ---------------------------------------------------------------------------------------


def parse_after(text: str, limit: int | None) -> Callable[[], None]:
    fmt = Nemotron35Format()
    spec = CallSpec(prompt="p", max_completion_chars=limit or 64 * 1024)
    completion = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}

    def once() -> None:
        with contextlib.suppress(VerdictParseError):
            fmt.parse(completion, spec)

    return once


def parser_table(runs: int) -> list[dict[str, Any]]:
    rows = []
    for name, text in ORDINARY.items():
        after = median_ms(parse_after(text, None), runs, inner=2000)
        before = baseline_parse_ms(text, runs)
        rows.append(
            {"input": name, "chars": len(text), "before_ms": before, "after_ms": after, "whole_ms": after}
        )
    for kind in HOSTILE_KINDS:
        for label, size in SIZES.items():
            text = hostile(kind, size)
            rows.append(
                {
                    "input": f"hostile {label}: {kind}",
                    "chars": len(text),
                    "before_ms": baseline_parse_ms(text, 1),
                    "after_ms": median_ms(parse_after(text, None), runs),
                    "whole_ms": median_ms(parse_after(text, size + 1), runs),
                }
            )
    return rows


# --- table 2: planner ---------------------------------------------------------------------------------------


def prompt_text(kind: str, size: int) -> str:
    unit = (
        "The quarterly report, section 4.2: revenue grew 12% while costs fell; see the appendix for details. "
        if kind == "English-like"
        else "季度报告第四节：收入增长了百分之十二，成本下降，详见附录。"
    )
    return (unit * (size // len(unit) + 1))[:size]


async def _loop_lag(work: Callable[[], Any]) -> tuple[float, float]:
    """(milliseconds the work took, longest gap in ms between two turns of a ticker that only yields)."""
    done = asyncio.Event()
    longest = 0.0

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    result = work()
    if asyncio.iscoroutine(result):
        await result
    elapsed = time.perf_counter() - t0
    done.set()
    await task
    return elapsed * 1e3, longest * 1e3


def planner_table(runs: int) -> list[dict[str, Any]]:
    old = load_baseline("baseline_windows", "langchain_nemoguard/core/windows.py")
    fmt, windows = Nemotron35Format(), WindowOptions()
    policy = Policy()
    rows = []
    for kind in ("English-like", "CJK"):
        for label, size in SIZES.items():
            text = prompt_text(kind, size)

            def after(text: str = text) -> Any:
                conv = Conversation(prompt=text)  # built outside the guard: the input limit is not in play
                return aplan_calls(conv, [], policy, "categories", model_format=fmt, windows=windows)

            def before(text: str = text) -> Any:
                assert old is not None
                return old.split_windows(text, old.WindowOptions())  # what main's acheck ran, in the loop

            after_runs = [asyncio.run(_loop_lag(after)) for _ in range(runs)]
            before_runs = [asyncio.run(_loop_lag(before)) for _ in range(max(1, runs // 2))] if old else []
            calls = len(asyncio.run(after()).specs)
            rows.append(
                {
                    "prompt": f"{label} {kind}",
                    "calls": calls,
                    "before_ms": statistics.median(r[0] for r in before_runs) if before_runs else "n/a",
                    "after_ms": statistics.median(r[0] for r in after_runs),
                    "before_lag_ms": statistics.median(r[1] for r in before_runs) if before_runs else "n/a",
                    "after_lag_ms": statistics.median(r[1] for r in after_runs),
                }
            )
    return rows


# --- output -----------------------------------------------------------------------------------------------


def fmt_ms(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3f}" if value < 1 else f"{value:.1f}"


def ratio(before: float | str, after: float) -> str:
    if isinstance(before, str):
        return f"> {float(before.split()[1]) * 1e3 / after:,.0f}x" if before.startswith(">") else "n/a"
    value = before / after
    return f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--baseline", default=BASELINE_REF, help="git revision of the 'before' code")
    args = ap.parse_args()
    os.environ["BENCH_BASELINE"] = args.baseline  # read by the child processes too

    parser_rows = parser_table(args.runs)
    print(f"\nParser: ms per verdict (median of {args.runs})")
    print(f"{'input':<44} {'chars':>9} {'before':>10} {'after':>9} {'whole text':>11} {'ratio':>9}")
    for r in parser_rows:
        print(
            f"{r['input']:<44} {r['chars']:>9,} {fmt_ms(r['before_ms']):>10} {fmt_ms(r['after_ms']):>9} "
            f"{fmt_ms(r['whole_ms']):>11} {ratio(r['before_ms'], r['after_ms']):>9}"
        )
    planner_rows = planner_table(args.runs)
    print(
        f"\nPlanner: ms to plan one check, and the event loop's longest stall meanwhile (median of {args.runs})"
    )
    print(
        f"{'prompt':<20} {'calls':>6} {'before':>9} {'after':>8} {'ratio':>7} {'lag before':>11} {'lag after':>10}"
    )
    for r in planner_rows:
        print(
            f"{r['prompt']:<20} {r['calls']:>6} {fmt_ms(r['before_ms']):>9} {fmt_ms(r['after_ms']):>8} "
            f"{ratio(r['before_ms'], r['after_ms']):>7} {fmt_ms(r['before_lag_ms']):>11} "
            f"{fmt_ms(r['after_lag_ms']):>10}"
        )
    out = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "runs": args.runs,
        "baseline": args.baseline,
        "parser": parser_rows,
        "planner": planner_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
