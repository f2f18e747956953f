"""Statistics over seeds (scipy.stats): confidence intervals, t-tests, Holm's correction, equivalence
tests (TOST) and the number of seeds a decision needs; ``verdict`` turns them into a reproduction
verdict for one table cell.

A cell's verdict against the paper's number ``target`` with tolerance ``tol`` (same units as the values):

- *reproduced*: the two one-sided t-tests of the seeds' mean against ``target - tol`` and ``target + tol``
  (using the seeds' measured standard deviation) both reject at ``alpha``: the mean is within ``tol``;
- *not reproduced*: ``target`` lies outside the ``1 - alpha`` confidence interval by more than ``tol``;
- *underpowered*: neither (too few seeds or too much variance); one seed is always underpowered.
  ``seeds_needed`` says how many seeds would decide it, at the measured std and difference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

REPRODUCED, NOT_REPRODUCED, UNDERPOWERED = "reproduced", "not reproduced", "underpowered"
MAX_SEEDS = 1000  # seeds_needed answers None beyond this


def _array(values) -> np.ndarray:
    return np.asarray([float(v) for v in values], dtype=float)


def mean_ci(values, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, lo, hi): the t-interval of the mean at ``level``; lo = hi = None with one value."""
    arr = _array(values)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, None, None
    sem = float(stats.sem(arr))
    if sem == 0.0:
        return mean, mean, mean
    lo, hi = stats.t.interval(level, len(arr) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def paired_ttest(a, b) -> float:
    """Two-sided p-value of the paired t-test (``ttest_rel``); NaN when it is undefined."""
    return float(stats.ttest_rel(_array(a), _array(b)).pvalue)


def welch_ttest(a, b) -> float:
    """Two-sided p-value of Welch's t-test (``ttest_ind`` with unequal variances)."""
    return float(stats.ttest_ind(_array(a), _array(b), equal_var=False).pvalue)


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given."""
    p = _array(pvalues)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [float(x) for x in adjusted]


def tost(values, target: float, tolerance: float, alpha: float = 0.05) -> tuple[float, bool]:
    """Equivalence of the mean of ``values`` to ``target`` within ±``tolerance``: two one-sided
    one-sample t-tests (H0: mean <= target - tol; H0: mean >= target + tol) with the values' own std.
    Returns (p, passed): p is the larger of the two p-values, passed is p < alpha. Fewer than two
    values: (1.0, False)."""
    arr = _array(values)
    if len(arr) < 2:
        return 1.0, False
    if float(np.ptp(arr)) == 0.0:  # no spread: the t statistics are infinite
        inside = abs(float(arr[0]) - target) < tolerance
        return (0.0, True) if inside else (1.0, False)
    lower = stats.ttest_1samp(arr, target - tolerance, alternative="greater").pvalue
    upper = stats.ttest_1samp(arr, target + tolerance, alternative="less").pvalue
    p = float(max(lower, upper))
    return p, p < alpha


def _tost_power(n: int, std: float, diff: float, tolerance: float, alpha: float) -> float:
    """Power of TOST with n values at true difference ``diff`` (a lower bound: P(A and B) >= P(A) +
    P(B) - 1 over the two one-sided tests, with the noncentral t)."""
    df, scale = n - 1, std / math.sqrt(n)
    crit = stats.t.ppf(1 - alpha, df)
    low = stats.nct.sf(crit, df, (diff + tolerance) / scale)
    high = stats.nct.cdf(-crit, df, (diff - tolerance) / scale)
    return float(max(0.0, low + high - 1.0))


def _exclusion_power(n: int, std: float, diff: float, tolerance: float, alpha: float) -> float:
    """Probability that the two-sided 1 - alpha interval misses the target by more than ``tolerance``
    when the true mean is ``diff`` away from it (|diff| > tolerance)."""
    df, scale = n - 1, std / math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, (abs(diff) - tolerance) / scale))


def seeds_needed(
    std: float, diff: float, tolerance: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Seeds that decide a cell with probability ``power`` at the measured ``std`` and difference
    ``diff`` (mean - target): TOST passes when |diff| < tolerance, the confidence interval excludes
    target ± tolerance when |diff| > tolerance. None when no number of seeds decides it (|diff| equal to
    the tolerance) or more than MAX_SEEDS would be needed. At least 2 (one seed never decides)."""
    std, diff, tolerance = abs(float(std)), float(diff), float(tolerance)
    if math.isclose(abs(diff), tolerance, rel_tol=1e-12, abs_tol=1e-15):
        return None
    if std == 0.0:
        return 2
    test = _tost_power if abs(diff) < tolerance else _exclusion_power
    for n in range(2, MAX_SEEDS + 1):
        if test(n, std, diff, tolerance, alpha) >= power:
            return n
    return None


def verdict(values, target: float, tolerance: float, alpha: float = 0.05) -> dict:
    """The reproduction verdict of one cell (see the module doc): {verdict, n, mean, std, ci, p_tost,
    seeds_needed, target, tolerance}. ``seeds_needed`` is filled for an underpowered cell (None where
    no number of seeds decides it; with one seed, the std is unknown and it stays None)."""
    arr = _array(values)
    n = len(arr)
    mean, lo, hi = mean_ci(arr, 1 - alpha)
    std = float(arr.std(ddof=1)) if n > 1 else None
    p, passed = tost(arr, target, tolerance, alpha)
    out = {
        "n": n,
        "mean": mean,
        "std": std,
        "ci": [lo, hi] if lo is not None else None,
        "p_tost": p if n > 1 else None,
        "target": float(target),
        "tolerance": float(tolerance),
        "seeds_needed": None,
    }
    if n > 1 and passed:
        out["verdict"] = REPRODUCED
    elif n > 1 and (target < lo - tolerance or target > hi + tolerance):
        out["verdict"] = NOT_REPRODUCED
    else:
        out["verdict"] = UNDERPOWERED
        if n > 1:
            out["seeds_needed"] = seeds_needed(std, mean - target, tolerance, alpha)
    return out
