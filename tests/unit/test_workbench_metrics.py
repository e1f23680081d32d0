"""Metrics against hand-computed values: rates, bootstrap intervals, percentiles, curves, McNemar."""

from __future__ import annotations

import math

import pytest

from langchain_nemoguard.workbench.metrics import (
    Confusion,
    accuracy,
    average_precision,
    bootstrap,
    curve,
    f1,
    fpr,
    percentiles,
    precision,
    recall,
    roc_auc,
    threshold_for_fpr,
)
from langchain_nemoguard.workbench.stats import mcnemar


def test_rates_by_hand() -> None:
    c = Confusion.of([(True, True)] * 6 + [(True, False)] * 2 + [(False, True)] * 3 + [(False, False)] * 9)
    assert c == Confusion(tp=6, fp=3, tn=9, fn=2)
    assert accuracy(c) == pytest.approx(15 / 20)
    assert precision(c) == pytest.approx(6 / 9)
    assert recall(c) == pytest.approx(6 / 8)
    assert f1(c) == pytest.approx(12 / 17)  # 2TP / (2TP + FP + FN)
    assert fpr(c) == pytest.approx(3 / 12)


def test_undefined_rates_are_none_not_zero() -> None:
    unsafe_only = Confusion(tp=3, fn=1)
    assert fpr(unsafe_only) is None and precision(unsafe_only) == 1.0 and recall(unsafe_only) == 0.75
    assert recall(Confusion(fp=1, tn=2)) is None and f1(Confusion(tn=5)) is None
    assert accuracy(Confusion()) is None


def test_bootstrap_of_a_perfect_or_empty_run() -> None:
    ci = bootstrap(Confusion(tp=10, tn=10), replicates=200, seed=1)
    assert ci["accuracy"] == (1.0, 1.0) and ci["fpr"] == (0.0, 0.0)
    assert bootstrap(Confusion(), replicates=200) == dict.fromkeys(
        ("accuracy", "precision", "recall", "f1", "fpr")
    )
    assert bootstrap(Confusion(tp=1), replicates=0)["recall"] is None


def test_bootstrap_matches_the_exact_resampling_distribution() -> None:
    # 3 TP and 1 FN: the resampled TP count is Binomial(4, 3/4), recall = k/4.
    # P(k <= 0) = 0.0039 and P(k <= 1) = 0.0508, so the 2.5th percentile is 1/4; P(k <= 3) = 0.68: the 97.5th is 1.
    lo, hi = bootstrap(Confusion(tp=3, fn=1), replicates=4000, seed=3)["recall"]  # type: ignore[misc]
    assert (lo, hi) == (0.25, 1.0)


def test_bootstrap_agrees_with_the_normal_approximation_for_a_large_sample() -> None:
    # accuracy 0.8 on 400: 0.8 +- 1.96 * sqrt(0.8 * 0.2 / 400) = [0.7608, 0.8392]
    lo, hi = bootstrap(Confusion(tp=160, tn=160, fp=40, fn=40), replicates=2000, seed=0)["accuracy"]  # type: ignore[misc]
    assert lo == pytest.approx(0.7608, abs=0.012) and hi == pytest.approx(0.8392, abs=0.012)


def test_bootstrap_is_reproducible_by_seed() -> None:
    c = Confusion(tp=30, fp=7, tn=50, fn=13)
    assert bootstrap(c, replicates=300, seed="7:overall") == bootstrap(c, replicates=300, seed="7:overall")
    assert bootstrap(c, replicates=300, seed="7:overall") != bootstrap(c, replicates=300, seed="8:overall")


def test_percentiles_interpolate_linearly() -> None:
    p = percentiles([4.0, 1.0, 3.0, 2.0])
    assert (p["p50"], p["p90"], p["p95"], p["p99"]) == pytest.approx((2.5, 3.7, 3.85, 3.97))
    assert (p["mean"], p["max"], p["n"]) == (2.5, 4.0, 4.0)
    assert percentiles([])["p50"] is None


SCORES = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4]
TRUTHS = [True, True, False, True, False, False]


def test_roc_auc_and_average_precision_by_hand() -> None:
    points = curve(SCORES, TRUTHS)
    # AUC = P(score of an unsafe example > score of a safe one) = 8 of 9 pairs
    assert roc_auc(points) == pytest.approx(8 / 9)
    # AP = 1/3 * 1 (at 0.9) + 1/3 * 1 (at 0.8) + 1/3 * 3/4 (at 0.6)
    assert average_precision(points) == pytest.approx(1 / 3 + 1 / 3 + 1 / 4)
    assert [round(p.fpr, 3) for p in points] == [0, 0, 0, 0.333, 0.333, 0.667, 1]
    assert roc_auc(curve([0.5, 0.5], [True, False])) == pytest.approx(0.5)  # a tie counts half


def test_threshold_for_a_target_false_positive_rate() -> None:
    points = curve(SCORES, TRUTHS)
    strict = threshold_for_fpr(points, 0.0)
    assert (strict.threshold, strict.tpr, strict.fpr) == (0.8, pytest.approx(2 / 3), 0.0)
    loose = threshold_for_fpr(points, 0.34)
    assert (loose.threshold, loose.tpr, loose.fpr) == (0.6, 1.0, pytest.approx(1 / 3))
    with pytest.raises(ValueError, match="both"):
        curve([0.1, 0.2], [True, True])


def test_mcnemar_exact_for_few_discordant_pairs() -> None:
    # b=1, c=6: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 16/128
    m = mcnemar(1, 6)
    assert (m.method, m.p_value, m.statistic) == ("exact", 0.125, 1.0)
    assert mcnemar(0, 0).p_value == 1.0
    assert mcnemar(12, 12).p_value == 1.0  # 24 pairs: still exact, capped at 1
    assert mcnemar(0, 5).p_value == pytest.approx(2 / 32)


def test_mcnemar_chi_square_with_continuity_correction() -> None:
    # b=10, c=30: (|10-30| - 1)^2 / 40 = 9.025; p = erfc(sqrt(9.025 / 2)) = 0.002663
    m = mcnemar(10, 30)
    assert m.method == "chi2" and m.statistic == pytest.approx(9.025)
    assert m.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2))) and m.p_value == pytest.approx(
        0.002663, abs=1e-6
    )
    assert mcnemar(13, 13).statistic == 0.0 and mcnemar(13, 13).p_value == 1.0
