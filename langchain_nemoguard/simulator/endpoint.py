"""The real endpoint if one is configured, else an in-process simulator, announced loudly (examples, demos).

Production code builds its own ``NemoGuard``; the simulator is a test double and never a silent fallback: it
starts only when no endpoint is configured, and says so before the first verdict, on stdout (so that a redirected
run's output still says it) and on stderr (so that a terminal showing only errors does too).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..core.guard import NemoGuard

_SERVER_STACK = ("starlette", "uvicorn")  # the `simulator` extra
_NOTICE = (
    "No guard endpoint configured: starting the INTERFACE SIMULATOR in-process.",
    "It is a deterministic rule-based TEST DOUBLE, NOT A SAFETY MODEL: the verdicts below",
    "show the plumbing only. Set NEMOGUARD_BASE_URL (or --base-url / --provider) to use",
    "the real Nemotron 3.5 Content Safety model.",
)


@contextlib.contextmanager
def guard_or_simulator(**kwargs: Any) -> Iterator[NemoGuard]:
    """A guard on the endpoint the environment names (``NEMOGUARD_BASE_URL`` / ``NEMOGUARD_PROVIDER``), or on an
    in-process interface simulator, announced loudly. ``kwargs`` are ``NemoGuard`` arguments."""
    from ..core.guard import NemoGuard
    from ..core.providers import endpoint_configured

    with (
        endpoint_or_simulator(endpoint_configured(), kwargs.pop("base_url", None)) as (url, _),
        NemoGuard(url, **kwargs) as guard,
    ):
        yield guard


@contextlib.contextmanager
def endpoint_or_simulator(use_real: bool, base_url: str | None) -> Iterator[tuple[str | None, bool]]:
    """Yields (base URL, simulated): ``base_url`` (None: from the environment) when ``use_real``, else the URL
    of an in-process simulator started for the duration, after a loud notice that it is a test double."""
    if use_real:
        yield base_url, False
        return
    try:
        from .server import SimulatorServer
    except ImportError as exc:
        if exc.name not in _SERVER_STACK:
            raise
        from ..core.errors import ConfigurationError

        raise ConfigurationError(
            "no guard endpoint is configured (NEMOGUARD_BASE_URL / NEMOGUARD_PROVIDER) and the interface "
            f"simulator is not installed ({exc.name} is missing): pip install 'langchain-nemoguard[simulator]'"
        ) from None

    announce("\n".join(["!" * 78, *(f"!! {line}" for line in _NOTICE), "!" * 78]))
    with SimulatorServer() as sim:
        yield sim.base_url, True


def announce(text: str, out: TextIO | None = None, err: TextIO | None = None) -> None:
    """Print ``text`` on stdout and on stderr, once only when both are the same file (a terminal)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    print(text, file=out, flush=True)
    if not _same_file(out, err):
        print(text, file=err, flush=True)


def _same_file(a: TextIO, b: TextIO) -> bool:
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured, StringIO): print on both
        return False


__all__ = ["announce", "endpoint_or_simulator", "guard_or_simulator"]
