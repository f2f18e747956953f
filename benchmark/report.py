"""Tables from run records: model x dataset, test Logloss and AUC (mean ± std over seeds), #params and
RelaImp against a baseline (IBNet paper eq. 28):

    RelaImp_AUC  = ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100%
    RelaImp_Loss = (Loss - Loss_base) / Loss_base * 100%

Rendered as markdown, csv or LaTeX. Reads only the records file.
"""

from __future__ import annotations

import csv
import io
from collections import OrderedDict, defaultdict

import numpy as np

from .errors import CTRBenchError


def relaimp_auc(auc: float, base: float) -> float:
    """Relative AUC improvement in percent; AUCs may be fractions or percentages (both the same)."""
    half = 50.0 if max(auc, base) > 1.0 else 0.5
    return ((auc - half) / (base - half) - 1.0) * 100.0


def relaimp_loss(loss: float, base: float) -> float:
    return (loss - base) / base * 100.0


def aggregate(records: list[dict], split: str = "test", datasets=None, models=None) -> "OrderedDict":
    """(report_name, dataset_id) -> {AUC: [...], logloss: [...], seeds: [...], params: int, ...}."""
    cells: "OrderedDict" = OrderedDict()
    for rec in records:
        metrics = rec.get(split) or {}
        name = rec.get("report_name") or rec.get("model")
        ds = rec.get("dataset_id")
        if datasets and ds not in datasets:
            continue
        if models and name not in models:
            continue
        cell = cells.setdefault((name, ds), defaultdict(list))
        for k, v in metrics.items():
            cell[k].append(float(v))
        cell["seeds"].append(rec.get("seed"))
        cell["params"] = rec.get("params")
        for k in ("seconds_per_epoch", "samples_per_second", "peak_memory_mb", "infer_ms_per_100"):
            if rec.get(k) is not None:
                cell[k].append(float(rec[k]))
    return cells


def _mean_std(values) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def build_table(records: list[dict], baseline: str | None = None, datasets=None, models=None,
                split: str = "test") -> dict:
    """A table structure: {datasets, models, cells{(m, d): {...}}} with RelaImp filled in."""
    cells = aggregate(records, split, datasets, models)
    if not cells:
        raise CTRBenchError("no run records match; run experiments first or check --results/--datasets")
    ds_order = list(datasets) if datasets else list(OrderedDict.fromkeys(d for _, d in cells))
    model_order = list(models) if models else list(OrderedDict.fromkeys(m for m, _ in cells))
    if baseline and baseline not in model_order:
        raise CTRBenchError(f"--baseline {baseline} has no records; models with records: {', '.join(model_order)}")
    out = {}
    for (m, d), cell in cells.items():
        row = {"n": len(cell["seeds"]), "params": cell.get("params"), "seeds": cell["seeds"]}
        for metric in ("AUC", "logloss"):
            if cell.get(metric):
                row[metric], row[metric + "_std"] = _mean_std(cell[metric])
                row[metric + "_values"] = list(cell[metric])
        for k in ("seconds_per_epoch", "samples_per_second", "peak_memory_mb", "infer_ms_per_100"):
            if cell.get(k):
                row[k] = float(np.mean(cell[k]))
        out[(m, d)] = row
    if baseline:
        for (m, d), row in out.items():
            base = out.get((baseline, d))
            if base and "AUC" in row and "AUC" in base:
                row["relaimp_auc"] = relaimp_auc(row["AUC"], base["AUC"])
            if base and "logloss" in row and "logloss" in base:
                row["relaimp_loss"] = relaimp_loss(row["logloss"], base["logloss"])
    return {"datasets": ds_order, "models": model_order, "cells": out, "baseline": baseline, "split": split}


def _fmt(row, metric, digits, pct=False):
    if row is None or metric not in row:
        return "–"
    scale = 100.0 if pct else 1.0
    text = f"{row[metric] * scale:.{digits}f}"
    if row.get("n", 1) > 1:
        text += f" ± {row[metric + '_std'] * scale:.{digits}f}"
    return text


def _params(n):
    if not n:
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def rows(table: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Model"]
    for d in table["datasets"]:
        header += [f"{d} Logloss", f"{d} AUC(%)", f"{d} #Params"]
        if table["baseline"]:
            header += [f"{d} RelaImp Loss", f"{d} RelaImp AUC"]
    body = []
    for m in table["models"]:
        line = [m]
        for d in table["datasets"]:
            row = table["cells"].get((m, d))
            line += [_fmt(row, "logloss", 6), _fmt(row, "AUC", 4, pct=True), _params(row and row.get("params"))]
            if table["baseline"]:
                line += [f"{row['relaimp_loss']:+.2f}%" if row and "relaimp_loss" in row else "–",
                         f"{row['relaimp_auc']:+.2f}%" if row and "relaimp_auc" in row else "–"]
        body.append(line)
    return header, body


def render(table: dict, fmt: str = "md") -> str:
    header, body = rows(table)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue()
    if fmt == "latex":
        cols = "l" + "r" * (len(header) - 1)
        esc = lambda s: s.replace("%", r"\%").replace("±", r"$\pm$").replace("_", r"\_")
        lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(esc(h) for h in header) + r" \\",
                 r"\midrule"]
        lines += [" & ".join(esc(c) for c in line) + r" \\" for line in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    if fmt != "md":
        raise CTRBenchError(f"--format {fmt}: choose md, csv or latex")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def significance(values, baseline_values, paired: bool | None = None, alternative: str = "two-sided") -> float | None:
    """p-value of a t-test between two lists of per-seed metrics (scipy.stats).

    Paired (``ttest_rel``) when ``paired`` is true, or when None and both lists have the same length
    (same seeds); otherwise Welch's ``ttest_ind(equal_var=False)``. None with fewer than 2 values.
    """
    from scipy import stats

    a, b = np.asarray(values, dtype=float), np.asarray(baseline_values, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    if paired is None:
        paired = len(a) == len(b)
    if paired:
        if np.allclose(a - b, (a - b)[0]):
            return 0.0 if not np.isclose((a - b)[0], 0.0) else 1.0
        return float(stats.ttest_rel(a, b, alternative=alternative).pvalue)
    return float(stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)
