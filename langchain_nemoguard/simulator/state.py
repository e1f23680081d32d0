"""Per-app mutable state: forced outcomes, the request log, counters and the seeded random generators.

One ``SimulatorState`` hangs off each app (``app.state.simulator``), so two simulators in one process never
share anything. All access happens on the server's event loop; the admin API is the only way in from outside.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .config import SimulatorConfig, validate_fault_kind
from .rules import RuleSet
from .verdict import SimulatedVerdict

VERDICT_CACHE_SIZE = 4096

_VERDICT_KEYS = frozenset({"user", "response", "categories", "reasoning", "user_score", "response_score"})
_RAW_KEYS = frozenset({"raw", "finish_reason", "reasoning_content"})


def _probability(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{key!r} must be a probability between 0 and 1, got {value!r}")
    return float(value)


def _safety(value: Any, key: str) -> bool | None:
    if value is None:
        return None
    if value not in ("safe", "unsafe"):
        raise ValueError(f'{key!r} must be "safe" or "unsafe", got {value!r}')
    return bool(value == "safe")


@dataclass(frozen=True, slots=True)
class ForcedOutcome:
    """One queued answer for the next request whose user text contains ``match`` (any request if None).

    Three kinds: ``verdict`` (fields not given fall back to the rule-based verdict and the request's output
    mode still applies), ``raw`` (the exact model output, for testing parsers against odd text), ``fault``.
    """

    kind: Literal["verdict", "raw", "fault"]
    match: str | None = None
    user_safe: bool | None = None
    response_safe: bool | None = None
    categories: tuple[str, ...] | None = None
    reasoning: str | None = None
    raw: str | None = None
    raw_reasoning: str | None = None
    finish_reason: Literal["stop", "length"] = "stop"
    fault: str | None = None
    user_score: float | None = None  # P(unsafe) at the verdict word, for requests that ask for logprobs
    response_score: float | None = None

    @classmethod
    def from_json(cls, spec: Any, match: str | None = None) -> ForcedOutcome:
        """Validate one entry of ``POST /_simulator/force``'s ``verdicts`` list; raise ``ValueError`` if wrong."""
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError(f"each forced outcome must be a non-empty object, got {spec!r}")
        keys = set(spec)
        if "fault" in spec:
            if keys != {"fault"}:
                raise ValueError("a fault outcome takes only the 'fault' key")
            return cls("fault", match, fault=validate_fault_kind(str(spec["fault"])))
        if "raw" in spec:
            if not keys <= _RAW_KEYS:
                raise ValueError(f"a raw outcome takes only {sorted(_RAW_KEYS)}; got {sorted(keys)}")
            raw, finish = spec["raw"], spec.get("finish_reason", "stop")
            reasoning = spec.get("reasoning_content")
            if not isinstance(raw, str):
                raise ValueError("'raw' must be a string")
            if finish not in ("stop", "length"):
                raise ValueError(f"'finish_reason' must be 'stop' or 'length', got {finish!r}")
            if reasoning is not None and not isinstance(reasoning, str):
                raise ValueError("'reasoning_content' must be a string")
            return cls("raw", match, raw=raw, raw_reasoning=reasoning, finish_reason=finish)
        if not keys <= _VERDICT_KEYS:
            raise ValueError(
                f"unknown keys {sorted(keys - _VERDICT_KEYS)}; a verdict takes {sorted(_VERDICT_KEYS)}"
            )
        categories = spec.get("categories")
        if categories is not None and (
            not isinstance(categories, list) or not all(isinstance(c, str) for c in categories)
        ):
            raise ValueError("'categories' must be a list of strings")
        reasoning = spec.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, str):
            raise ValueError("'reasoning' must be a string")
        return cls(
            "verdict",
            match,
            user_safe=_safety(spec.get("user"), "user"),
            response_safe=_safety(spec.get("response"), "response"),
            categories=None if categories is None else tuple(categories),
            reasoning=reasoning,
            user_score=_probability(spec.get("user_score"), "user_score"),
            response_score=_probability(spec.get("response_score"), "response_score"),
        )

    def applies_to(self, user_text: str) -> bool:
        return self.match is None or self.match in user_text


class SimulatorState:
    """Everything that changes while a simulator runs; ``reset()`` puts it back to the just-started state."""

    def __init__(self, config: SimulatorConfig, rules: RuleSet) -> None:
        self.config = config
        self.rules = rules
        self.forced: deque[ForcedOutcome] = deque()
        self.recorded: deque[Any] = deque(maxlen=config.max_recorded_requests)
        self.requests_total = 0
        self.statuses: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.forced_total = 0
        self._verdicts: OrderedDict[Hashable, SimulatedVerdict] = OrderedDict()
        self._seed_generators()

    def _seed_generators(self) -> None:
        # Two generators, so that turning jitter on or off does not shift which requests get faults.
        seed = self.config.seed
        self.fault_rng = random.Random(seed) if seed is not None else random.Random()
        self.latency_rng = random.Random(f"{seed}/latency") if seed is not None else random.Random()

    def reset(self) -> None:
        self.forced.clear()
        self.recorded.clear()
        self.requests_total = 0
        self.statuses.clear()
        self.faults.clear()
        self.forced_total = 0
        self._verdicts.clear()
        self._seed_generators()

    def verdict(self, key: Hashable, compute: Callable[[], SimulatedVerdict]) -> SimulatedVerdict:
        """Verdicts are pure functions of the request, so repeated inputs (benchmarks) skip the regex work."""
        hit = self._verdicts.get(key)
        if hit is not None:
            self._verdicts.move_to_end(key)
            return hit
        verdict = compute()
        self._verdicts[key] = verdict
        if len(self._verdicts) > VERDICT_CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return verdict

    def record(self, body: Any) -> None:
        self.requests_total += 1
        if self.config.max_recorded_requests:
            self.recorded.append(body)

    def draw_fault(self) -> str | None:
        """One uniform draw per request against the cumulative fault probabilities (always drawn, so a
        seeded run gives the same fault sequence whatever else the requests do)."""
        if not self.config.faults:
            return None
        u = self.fault_rng.random()
        edge = 0.0
        for spec in self.config.faults:
            edge += spec.probability
            if u < edge:
                return spec.kind
        return None

    def latency_s(self) -> float:
        jitter = self.config.latency_jitter_ms
        extra = self.latency_rng.uniform(0.0, jitter) if jitter else 0.0
        return (self.config.latency_ms + extra) / 1000.0

    def queue(self, outcomes: list[ForcedOutcome]) -> None:
        self.forced.extend(outcomes)

    def take_forced(self, user_text: str) -> ForcedOutcome | None:
        """Remove and return the oldest queued outcome that applies to this request (FIFO among matches)."""
        for i, outcome in enumerate(self.forced):
            if outcome.applies_to(user_text):
                del self.forced[i]
                self.forced_total += 1
                return outcome
        return None

    def metrics_text(self) -> str:
        """Prometheus text exposition of the counters (format 0.0.4)."""
        lines = [
            "# HELP nemoguard_simulator_info The simulator is a test double, not a safety model.",
            "# TYPE nemoguard_simulator_info gauge",
            'nemoguard_simulator_info{kind="not-a-safety-model"} 1',
            "# HELP nemoguard_simulator_requests_total Chat completion requests received.",
            "# TYPE nemoguard_simulator_requests_total counter",
            f"nemoguard_simulator_requests_total {self.requests_total}",
            "# HELP nemoguard_simulator_responses_total Chat completion outcomes by HTTP status (or reset/timeout).",
            "# TYPE nemoguard_simulator_responses_total counter",
            *(
                f'nemoguard_simulator_responses_total{{status="{k}"}} {v}'
                for k, v in sorted(self.statuses.items())
            ),
            "# HELP nemoguard_simulator_faults_total Injected faults by kind.",
            "# TYPE nemoguard_simulator_faults_total counter",
            *(f'nemoguard_simulator_faults_total{{kind="{k}"}} {v}' for k, v in sorted(self.faults.items())),
            "# HELP nemoguard_simulator_forced_total Requests answered from the forced-outcome queue.",
            "# TYPE nemoguard_simulator_forced_total counter",
            f"nemoguard_simulator_forced_total {self.forced_total}",
            "# HELP nemoguard_simulator_forced_pending Forced outcomes still queued.",
            "# TYPE nemoguard_simulator_forced_pending gauge",
            f"nemoguard_simulator_forced_pending {len(self.forced)}",
        ]
        return "\n".join(lines) + "\n"
