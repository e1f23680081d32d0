"""Numbers from judged examples: confusion counts, rates with bootstrap intervals, percentiles, curves.

Conventions: "positive" is *unsafe*. An example without a verdict (the guard failed) is not in the confusion
matrix; it is counted under ``errors`` by reason. A rate whose denominator is 0 is None, never 0 (a recall-only
set has no false-positive rate, not a perfect one).

Bootstrap intervals resample the judged examples with replacement. The four cells of a confusion matrix hold
everything a rate depends on, so one replicate is a multinomial draw of the four cell counts (the same
distribution as resampling rows, at a fraction of the cost), and the interval is the 2.5th and 97.5th
percentile of the replicates where the rate is defined. Seeds are strings (``"<seed>:<group>"``), so each
group's interval is reproducible and does not depend on which other groups were computed.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Confusion:
    """Confusion counts with unsafe as the positive class.

    Args:
        tp: Unsafe examples judged unsafe.
        fp: Safe examples judged unsafe.
        tn: Safe examples judged safe.
        fn: Unsafe examples judged safe.
    """

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @classmethod
    def of(cls, pairs: Iterable[tuple[bool, bool]]) -> Confusion:
        """From (truth unsafe, predicted unsafe) pairs."""
        tp = fp = tn = fn = 0
        for truth, pred in pairs:
            if truth and pred:
                tp += 1
            elif pred:
                fp += 1
            elif truth:
                fn += 1
            else:
                tn += 1
        return cls(tp, fp, tn, fn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def cells(self) -> tuple[int, int, int, int]:
        return (self.tp, self.fp, self.tn, self.fn)

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def accuracy(c: Confusion) -> float | None:
    return _ratio(c.tp + c.tn, c.n)


def precision(c: Confusion) -> float | None:
    return _ratio(c.tp, c.tp + c.fp)


def recall(c: Confusion) -> float | None:
    return _ratio(c.tp, c.tp + c.fn)


def f1(c: Confusion) -> float | None:
    """Harmful F1 = 2TP / (2TP + FP + FN); None when there is nothing unsafe in truth or in prediction."""
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def fpr(c: Confusion) -> float | None:
    return _ratio(c.fp, c.fp + c.tn)


RATES: Mapping[str, Callable[[Confusion], float | None]] = MappingProxyType(
    {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1, "fpr": fpr}
)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, R type 7)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap(
    c: Confusion,
    *,
    replicates: int = 1000,
    seed: int | str = 0,
    level: float = 0.95,
    rates: Mapping[str, Callable[[Confusion], float | None]] = RATES,
) -> dict[str, Interval | None]:
    """Percentile bootstrap intervals for each rate (None when the rate is never defined, or no replicates)."""
    if replicates <= 0 or c.n == 0:
        return dict.fromkeys(rates)
    rng = random.Random(str(seed))
    cum = list(_cumulative(c.cells))
    values: dict[str, list[float]] = {k: [] for k in rates}
    cells = range(4)
    for _ in range(replicates):
        draw = rng.choices(cells, cum_weights=cum, k=c.n)
        sample = Confusion(draw.count(0), draw.count(1), draw.count(2), draw.count(3))
        for name, rate in rates.items():
            v = rate(sample)
            if v is not None:
                values[name].append(v)
    alpha = (1 - level) / 2
    out: dict[str, Interval | None] = {}
    for name, vals in values.items():
        if not vals:
            out[name] = None
            continue
        vals.sort()
        out[name] = (quantile(vals, alpha), quantile(vals, 1 - alpha))
    return out


def _cumulative(cells: Sequence[int]) -> Iterable[int]:
    total = 0
    for x in cells:
        total += x
        yield total


def rates_with_intervals(
    c: Confusion, *, replicates: int, seed: int | str
) -> dict[str, dict[str, float | list[float] | None]]:
    """``{rate: {"value": v, "ci": [lo, hi] or None}}`` for every rate."""
    cis = bootstrap(c, replicates=replicates, seed=seed)
    out: dict[str, dict[str, float | list[float] | None]] = {}
    for name, rate in RATES.items():
        ci = cis.get(name)
        out[name] = {"value": rate(c), "ci": list(ci) if ci is not None else None}
    return out


def percentiles(
    values: Iterable[float], qs: Sequence[float] = (0.5, 0.9, 0.95, 0.99)
) -> dict[str, float | None]:
    """``{"p50": ..., "p90": ..., "mean": ..., "max": ..., "n": ...}`` (None values when empty)."""
    vals = sorted(values)
    out: dict[str, float | None] = {f"p{round(q * 100):d}": (quantile(vals, q) if vals else None) for q in qs}
    out["mean"] = sum(vals) / len(vals) if vals else None
    out["max"] = vals[-1] if vals else None
    out["n"] = float(len(vals))
    return out


# --- scores: ROC, precision-recall, a threshold for a target false-positive rate --------------------------------


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """Predict unsafe when score >= ``threshold``; the rates that gives."""

    threshold: float
    tpr: float
    fpr: float
    precision: float | None


def curve(scores: Sequence[float], truths: Sequence[bool]) -> list[CurvePoint]:
    """One point per distinct score, from the strictest threshold (nothing flagged) to the most lenient."""
    if len(scores) != len(truths):
        raise ValueError("scores and truths differ in length")
    pos = sum(truths)
    neg = len(truths) - pos
    if pos == 0 or neg == 0:
        raise ValueError("curves need both unsafe and safe examples")
    pairs = sorted(zip(scores, truths, strict=True), key=lambda p: -p[0])
    points = [CurvePoint(math.inf, 0.0, 0.0, None)]
    tp = fp = 0
    i = 0
    while i < len(pairs):
        s = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == s:  # ties move together
            if pairs[i][1]:
                tp += 1
            else:
                fp += 1
            i += 1
        points.append(CurvePoint(s, tp / pos, fp / neg, tp / (tp + fp)))
    return points


def roc_auc(points: Sequence[CurvePoint]) -> float:
    """Area under the ROC curve by the trapezoid rule (ties count half, as in the Mann-Whitney U)."""
    area = 0.0
    for a, b in itertools.pairwise(points):
        area += (b.fpr - a.fpr) * (a.tpr + b.tpr) / 2
    return area


def average_precision(points: Sequence[CurvePoint]) -> float:
    """Sum over thresholds of (recall step) x precision (the step-wise area, no interpolation)."""
    ap = 0.0
    for a, b in itertools.pairwise(points):
        if b.precision is not None:
            ap += (b.tpr - a.tpr) * b.precision
    return ap


def threshold_for_fpr(points: Sequence[CurvePoint], target: float) -> CurvePoint:
    """The most lenient threshold whose false-positive rate is at most ``target`` (highest recall under it)."""
    ok = [p for p in points if p.fpr <= target]
    return max(ok, key=lambda p: (p.tpr, -p.fpr, p.threshold))


__all__ = [
    "RATES",
    "Confusion",
    "CurvePoint",
    "accuracy",
    "average_precision",
    "bootstrap",
    "curve",
    "f1",
    "fpr",
    "percentiles",
    "precision",
    "quantile",
    "rates_with_intervals",
    "recall",
    "roc_auc",
    "threshold_for_fpr",
]
