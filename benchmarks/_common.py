"""What the benchmark scripts share: the machine they ran on, writing results, ports and child processes.

Each script runs as ``python benchmarks/bench_X.py`` (this folder is then on ``sys.path``) and imports from here.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from langchain_nemoguard.simulator.process import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

__all__ = ["RESULTS", "ROOT", "child_process", "free_port", "machine", "write_results"]


def machine(**extra: Any) -> dict[str, Any]:
    """The machine a result was measured on (results are only comparable within one run, on one machine)."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **extra,
    }


def write_results(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON, atomically (a half-written file never replaces a good one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"wrote {shown}")


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready within {timeout} s")


@contextmanager
def child_process(
    args: Sequence[str], ready_url: str, what: str, cwd: Path, env: dict[str, str], timeout: float = 120.0
) -> Iterator[None]:
    """Run ``args`` with its output in ``cwd/what.log`` until the block ends; ready once ``ready_url`` is 200."""
    log = (cwd / f"{what}.log").open("w")
    proc = subprocess.Popen(list(args), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(ready_url, proc, what, timeout)
        yield
    finally:
        stop_process(proc)
        log.close()
