"""Verdicts of our numbers against a paper's: per metric ``stats.verdict`` (a TOST within a tolerance, or a
difference beyond it), per cell the worst of its metrics. Used by ``reproduce`` (its tables and
``<name>.verdicts.json``), ``report --targets`` and the board; the rules are in ``benchmark/reproduce.py``'s
module doc."""

from __future__ import annotations

from . import stats

#: Tolerances of the verdicts when a targets file names none (``benchmark/reproduce.py``'s doc): metric ->
#: the largest difference from the paper's number that still counts as the same, in the metric's own units
#: (AUC as a fraction: 0.001 = 0.1 AUC points).
DEFAULT_TOLERANCE = {"AUC": 0.001, "gAUC": 0.001, "logloss": 0.001}


def is_auc(metric: str) -> bool:
    return metric.lower().endswith("auc")


def as_fraction(metric: str, value):
    """AUC-like numbers as fractions (papers print 79.3064 or 0.793064); other metrics unchanged."""
    if value is None:
        return None
    value = float(value)
    return value / 100.0 if is_auc(metric) and value > 1.0 else value


def tolerances(targets: dict) -> dict:
    """metric -> tolerance for this targets file: DEFAULT_TOLERANCE, then ``auc_tolerance`` (AUC points,
    for AUC and gAUC), then the file's ``tolerance`` mapping (each metric in its own units; AUC as a
    fraction whatever the paper prints)."""
    tol = dict(DEFAULT_TOLERANCE)
    if targets.get("auc_tolerance") is not None:
        tol["AUC"] = tol["gAUC"] = float(targets["auc_tolerance"]) / 100.0
    tol.update({m: float(v) for m, v in (targets.get("tolerance") or {}).items()})
    return tol


def cell_verdict(values: dict, paper: dict, tol: dict, alpha: float = 0.05) -> dict | None:
    """The verdict of one cell: ``values`` metric -> our per-seed values, ``paper`` metric -> the
    paper's number. Each metric with a paper number and a tolerance gets ``stats.verdict``; the cell is
    *not reproduced* when any metric is, *reproduced* when all are, else *underpowered* with the seeds
    that would decide it (the most any metric needs; None where the std is unknown or no number of
    seeds decides). None when no metric can be compared."""
    per_metric = {}
    for metric, target in paper.items():
        if metric not in tol or not isinstance(target, (int, float)):
            continue
        ours = [v for v in values.get(metric) or [] if v is not None]
        if not ours:
            continue
        per_metric[metric] = stats.verdict(
            [as_fraction(metric, v) for v in ours], as_fraction(metric, target), tol[metric], alpha
        )
    if not per_metric:
        return None
    kinds = {v["verdict"] for v in per_metric.values()}
    if stats.NOT_REPRODUCED in kinds:
        verdict = stats.NOT_REPRODUCED
    elif kinds == {stats.REPRODUCED}:
        verdict = stats.REPRODUCED
    else:
        verdict = stats.UNDERPOWERED
    needed = None
    if verdict == stats.UNDERPOWERED:
        wanted = [v["seeds_needed"] for v in per_metric.values() if v["verdict"] == stats.UNDERPOWERED]
        needed = None if None in wanted else max(wanted)
    return {"verdict": verdict, "seeds_needed": needed, "metrics": per_metric}


def verdict_text(v: dict | None) -> str:
    if v is None:
        return "–"
    if v["verdict"] != stats.UNDERPOWERED:
        return v["verdict"]
    n = max(m["n"] for m in v["metrics"].values())
    if n < 2:
        return "underpowered (1 seed)"
    if v["seeds_needed"] is None:
        return f"underpowered ({n} seeds; more seeds do not decide it)"
    return f"underpowered ({n} seeds; ~{v['seeds_needed']} would decide)"
