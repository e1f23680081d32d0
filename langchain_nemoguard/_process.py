"""Stopping a child process (simulator, proxy) the same way everywhere: ask, wait, then insist."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 15.0) -> int:
    """SIGTERM, wait up to ``grace`` seconds, SIGKILL if still alive; returns the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
