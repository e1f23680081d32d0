"""McNemar's test: did the error rate change between two runs over the same examples?

Only the discordant pairs carry information: ``b`` examples run A got right and run B got wrong, ``c`` the
other way round. Under the null hypothesis (same error rate) each discordant pair is a fair coin, so
``min(b, c)`` is Binomial(b + c, 1/2). With fewer than :data:`EXACT_BELOW` discordant pairs the two-sided exact
binomial p-value is used; above it the chi-square statistic with continuity correction,
``(|b - c| - 1)^2 / (b + c)`` on one degree of freedom (Edwards 1948), whose p-value is ``erfc(sqrt(x / 2))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXACT_BELOW = 25


@dataclass(frozen=True, slots=True)
class McNemar:
    """The test's result.

    Args:
        b: Right in A, wrong in B.
        c: Wrong in A, right in B.
        method: ``exact`` (binomial) or ``chi2`` (with continuity correction).
        statistic: The chi-square statistic (``chi2``), or ``min(b, c)`` (``exact``).
        p_value: Two-sided.
    """

    b: int
    c: int
    method: str
    statistic: float
    p_value: float


def mcnemar(b: int, c: int, *, exact_below: int = EXACT_BELOW) -> McNemar:
    """McNemar's test on the discordant counts (see the module docstring)."""
    if b < 0 or c < 0:
        raise ValueError("counts must be >= 0")
    n = b + c
    if n == 0:
        return McNemar(b, c, "exact", 0.0, 1.0)
    if n < exact_below:
        k = min(b, c)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        return McNemar(b, c, "exact", float(k), min(1.0, 2 * tail))
    x = (abs(b - c) - 1) ** 2 / n if abs(b - c) >= 1 else 0.0
    return McNemar(b, c, "chi2", x, math.erfc(math.sqrt(x / 2)))


__all__ = ["EXACT_BELOW", "McNemar", "mcnemar"]
