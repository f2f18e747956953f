"""benchmark.stats against scipy and closed forms on fixed numbers."""

import math

import pytest
from scipy import stats as sp

from benchmark import stats

A = [0.8012, 0.8031, 0.8024, 0.8019, 0.8027]
B = [0.7998, 0.8010, 0.8016, 0.8001, 0.8013]


def test_mean_ci_is_the_t_interval():
    mean, lo, hi = stats.mean_ci(A)
    n = len(A)
    sd = math.sqrt(sum((x - mean) ** 2 for x in A) / (n - 1))
    half = sp.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert mean == pytest.approx(sum(A) / n)
    assert (lo, hi) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert stats.mean_ci([0.8]) == (0.8, None, None)  # one value: no interval
    assert stats.mean_ci([0.8, 0.8]) == (0.8, 0.8, 0.8)
    _, lo90, hi90 = stats.mean_ci(A, 0.90)
    assert lo < lo90 < hi90 < hi


def test_t_tests_match_scipy():
    assert stats.paired_ttest(A, B) == pytest.approx(sp.ttest_rel(A, B).pvalue)
    assert stats.welch_ttest(A, B) == pytest.approx(sp.ttest_ind(A, B, equal_var=False).pvalue)
    assert stats.welch_ttest(A, B) != pytest.approx(sp.ttest_ind(A, B).pvalue)  # not Student's


def test_holm_adjusts_in_step_down_order():
    # sorted 0.01, 0.02, 0.03, 0.04 -> 4*0.01, max(0.04, 3*0.02), max(0.06, 2*0.03), max(0.06, 0.04)
    assert stats.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]
    assert stats.holm([]) == []


def test_tost_is_two_one_sided_t_tests():
    target, tol = 0.8020, 0.001
    p, passed = stats.tost(A, target, tol)
    lower = sp.ttest_1samp(A, target - tol, alternative="greater").pvalue
    upper = sp.ttest_1samp(A, target + tol, alternative="less").pvalue
    assert p == pytest.approx(max(lower, upper)) and passed == (p < 0.05)
    assert passed  # mean 0.80226, sd 0.00072, n 5: inside ±0.001
    assert stats.tost(A, 0.8060, tol) == (pytest.approx(1.0, abs=1e-3), False)
    assert stats.tost([0.80], 0.80, tol) == (1.0, False)  # one seed never passes
    assert stats.tost([0.8, 0.8], 0.8, tol) == (0.0, True)  # no spread, inside
    assert stats.tost([0.8, 0.8], 0.81, tol) == (1.0, False)


def test_seeds_needed_reaches_the_power_it_promises():
    std, tol = 0.001, 0.001
    n = stats.seeds_needed(std, 0.0, tol)
    assert n is not None and n >= 2
    # simulated TOST pass rate at n is at least ~0.8, at n - 1 lower than at n
    import numpy as np

    rng = np.random.default_rng(0)

    def rate(k):
        """Share of 20,000 simulated k-seed cells whose TOST passes (the t statistics vectorised;
        the first rows checked against stats.tost)."""
        runs = rng.normal(0.0, std, size=(20000, k))
        mean, sem = runs.mean(axis=1), runs.std(axis=1, ddof=1) / np.sqrt(k)
        p = np.maximum(sp.t.sf((mean + tol) / sem, k - 1), sp.t.cdf((mean - tol) / sem, k - 1))
        for row, p_row in zip(runs[:5], p[:5]):
            assert stats.tost(row, 0.0, tol)[0] == pytest.approx(p_row)
        return float(np.mean(p < 0.05))

    assert rate(n) >= 0.78 and rate(max(n - 1, 2)) <= rate(n) + 0.02
    assert stats.seeds_needed(std, 0.0, tol / 4) > n  # tighter tolerance, more seeds
    assert stats.seeds_needed(std, 0.005, tol) is not None  # far off: seeds to exclude it
    assert stats.seeds_needed(std, tol, tol) is None  # on the edge: never decided
    assert stats.seeds_needed(0.0, 0.0, tol) == 2


@pytest.mark.parametrize(
    "values, target, expected",
    [
        (A, 0.8022, stats.REPRODUCED),
        (A, 0.8100, stats.NOT_REPRODUCED),  # far outside the interval
        ([0.8022], 0.8022, stats.UNDERPOWERED),  # one seed, even on the number
        ([0.800, 0.806], 0.803, stats.UNDERPOWERED),  # wide interval around the target
    ],
)
def test_verdict(values, target, expected):
    v = stats.verdict(values, target, 0.001)
    assert v["verdict"] == expected and v["n"] == len(values)
    if expected == stats.UNDERPOWERED and len(values) > 1:
        assert v["seeds_needed"] is not None and v["seeds_needed"] > len(values)
