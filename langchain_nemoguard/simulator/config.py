"""Settings of the interface simulator, and the fault specs the CLI and tests hand it.

Everything is a frozen value: one ``SimulatorConfig`` describes one server for its whole life, so a test that
builds two servers cannot leak settings from one into the other. The mutable parts (counters, forced
outcomes, random generators) live on the app's state object instead (see ``app.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..core.simulator_mark import HEADER, HEADER_VALUE

DEFAULT_MODEL: Final = "nvidia/nemotron-3.5-content-safety"
DEFAULT_HOST: Final = "127.0.0.1"

BANNER: Final = (
    "nemoguard simulator - NOT A SAFETY MODEL: deterministic rule-based test double of the "
    "Nemotron 3.5 Content Safety interface"
)
"""Printed on stderr at startup and repeated in ``/v1/models``: nobody may mistake this for a real guard."""

SIMULATOR_HEADER: Final = (HEADER, HEADER_VALUE)  # the client marks verdicts that carry it (Verdict.simulator)
SYSTEM_FINGERPRINT: Final = "nemoguard-simulator"

FAULT_KINDS: Final = ("reset", "timeout", "garbage", "truncated")
"""Non-HTTP fault kinds. Any HTTP error status (400-599, e.g. ``500``, ``503``, ``429``) is a fault kind too."""

_STATUS = re.compile(r"[45]\d\d")


def validate_fault_kind(kind: str) -> str:
    """Return ``kind`` normalised, or raise ``ValueError`` naming what is accepted."""
    kind = kind.strip().lower()
    if kind in FAULT_KINDS or _STATUS.fullmatch(kind):
        return kind
    raise ValueError(
        f"unknown fault kind {kind!r}: use an HTTP status 400-599 or one of {', '.join(FAULT_KINDS)}"
    )


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Inject ``kind`` into a fraction ``probability`` of chat-completion requests."""

    kind: str
    probability: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", validate_fault_kind(self.kind))
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault probability must be within [0, 1], got {self.probability}")

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Read the CLI form ``KIND:PROB`` (``500:0.1``, ``reset:0.05``); a bare ``KIND`` means always."""
        kind, sep, prob = text.strip().partition(":")
        try:
            probability = float(prob) if sep else 1.0
        except ValueError:
            raise ValueError(f"fault {text!r}: probability {prob!r} is not a number") from None
        return cls(kind, probability)


def _as_faults(faults: Iterable[FaultSpec | str | tuple[str, float]]) -> tuple[FaultSpec, ...]:
    out: list[FaultSpec] = []
    for f in faults:
        if isinstance(f, FaultSpec):
            out.append(f)
        elif isinstance(f, str):
            out.append(FaultSpec.parse(f))
        else:
            kind, prob = f
            out.append(FaultSpec(str(kind), float(prob)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How one simulator instance behaves.

    ``faults`` accepts ``FaultSpec`` objects, CLI strings (``"500:0.1"``) or ``(kind, probability)`` pairs; the
    probabilities are cumulative slices of one uniform draw per request, so they must add up to at most 1.
    ``latency_ms`` is added to every chat completion, plus a uniform ``[0, latency_jitter_ms]`` - jitter never
    makes a request faster than ``latency_ms``, so tests can assert a lower bound.
    """

    model: str = DEFAULT_MODEL
    strict_model: bool = False
    reasoning_field: bool = False
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    faults: tuple[FaultSpec, ...] = ()
    seed: int | None = None
    rules_path: str | Path | None = None
    timeout_fault_s: float = 3600.0
    max_recorded_requests: int = 100
    max_image_pixels: int = 40_000_000
    extra_models: tuple[str, ...] = ()
    split_verdict_tokens: bool = False  # logprobs: a verdict word as two tokens (see simulator/logprobs.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", _as_faults(self.faults))
        if sum(f.probability for f in self.faults) > 1.0 + 1e-9:
            raise ValueError("fault probabilities add up to more than 1")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0:
            raise ValueError("latency_ms and latency_jitter_ms must not be negative")
        if self.max_recorded_requests < 0:
            raise ValueError("max_recorded_requests must not be negative")
