"""The simulator as a child process (benchmarks: it must not share the client's GIL), and stopping children.

``stop_process`` stops any child (simulator, LiteLLM proxy) the same way everywhere: ask, wait, then insist.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 15.0) -> int:
    """SIGTERM, wait up to ``grace`` seconds, SIGKILL if still alive; returns the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimulatorProcess:
    """``python -m langchain_nemoguard.simulator`` in a child process, for fair timings.

    Args:
        latency_ms: Latency the simulator adds to every completion.
    """

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.port = free_port()
        self.latency_ms = latency_ms
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> SimulatorProcess:
        cmd = [sys.executable, "-m", "langchain_nemoguard.simulator", "--port", str(self.port)]
        cmd += ["--latency-ms", str(self.latency_ms)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the simulator did not start within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)


__all__ = ["SimulatorProcess", "free_port", "stop_process"]
