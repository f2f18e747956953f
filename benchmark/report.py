"""Tables from run records: model x dataset, test Logloss and AUC (mean ± std over seeds), #params and
RelaImp against a baseline (IBNet paper eq. 28):

    RelaImp_AUC  = ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100%
    RelaImp_Loss = (Loss - Loss_base) / Loss_base * 100%

Optionally (``build_table`` keywords, ``ctrbench report`` flags):

- ``significance``: a t-test of every model's per-seed AUC and Logloss against the baseline's
  (scipy.stats): ``paired`` (``ttest_rel`` on the seeds both ran), ``welch`` (``ttest_ind`` with
  unequal variances), ``welch_levene`` (MaskFusion's protocol: Levene's test for equal variances,
  then a one-tailed independent t-test, Student's when Levene keeps equal variances and Welch's
  otherwise; one-tailed towards "better": AUC greater, Logloss less) or ``auto`` (paired when both
  ran the same seeds, else Welch). Cells with p < ``alpha`` get a ``*``; the table gains a p(AUC)
  column.
- ``mark_best``: best value per dataset in bold, second best underlined (md and LaTeX).
- ``efficiency``: s/epoch, train samples/s, inference ms per 100 samples and peak memory (MB).

Rendered as markdown, csv or LaTeX. Reads only the records file; ``write_table`` writes the rendered
table and refuses a path that is the records file or any other file of JSON records.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import OrderedDict, defaultdict

import numpy as np

from .errors import CTRBenchError
from .records import group_records, looks_like_records
from .util import atomic_write, atomic_write_json

SIGNIFICANCE_METHODS = ("auto", "paired", "welch", "welch_levene")
EFFICIENCY = (
    ("seconds_per_epoch", "s/epoch"),
    ("samples_per_second", "samples/s"),
    ("infer_ms_per_100", "infer ms/100"),
    ("peak_memory_mb", "peak MB"),
)


#: Footnotes for a RelaImp that is not defined (the table prints "n/a" there).
RELAIMP_NA = {
    "auc": "RelaImp AUC n/a: the baseline's AUC is at or below 0.5 (no better than chance), "
    "so the improvement over it is not defined",
    "loss": "RelaImp Loss n/a: the baseline's Logloss is 0, so a relative change is not defined",
}


def relaimp_auc(auc: float, base: float) -> float | None:
    """Relative AUC improvement in percent; AUCs may be fractions or percentages (both the same).
    None where it is not defined: a baseline AUC at or below chance (0.5) divides by zero or flips
    the sign (a baseline of 0.45 would turn 0.6 into "-300%")."""
    half = 50.0 if max(auc, base) > 1.0 else 0.5
    if base <= half:
        return None
    return ((auc - half) / (base - half) - 1.0) * 100.0


def relaimp_loss(loss: float, base: float) -> float | None:
    """Relative Logloss change in percent; None at a zero baseline (not defined)."""
    if base <= 0.0:
        return None
    return (loss - base) / base * 100.0


def aggregate(
    records: list[dict], split: str = "test", datasets=None, models=None, latest: bool = False
) -> "OrderedDict":
    """(label, dataset_id) -> {AUC: [...], logloss: [...], seeds: [...], params: int, group, ...}.

    Records are grouped by what was run (``records.group_records``: dataset, expid and config without
    the seed): one value per distinct seed of one config, a re-run of a seed replaces the earlier record
    (never a second seed), two configs of one model are two rows with labels that tell them apart, and
    a record without ``split`` metrics is no seed. ``models`` matches a row's label, report name or
    expid. The result's ``groups`` attribute holds the groups and what was left out.
    """
    groups = group_records(records, split, latest)
    cells: "OrderedDict" = _Cells()
    cells.groups = groups
    for group in groups:
        if datasets and group.dataset_id not in datasets:
            continue
        if models and not {group.label, group.name, group.expid} & set(models):
            continue
        cell = cells.setdefault((group.label, group.dataset_id), defaultdict(list))
        cell["group"] = group
        for rec in group.records:
            for k, v in rec[split].items():
                if isinstance(v, (int, float)):
                    cell[k].append(float(v))
            cell["seeds"].append(rec.get("seed"))
            cell["params"] = rec.get("params")
            for k, _ in EFFICIENCY:
                if rec.get(k) is not None:
                    cell[k].append(float(rec[k]))
    return cells


class _Cells(OrderedDict):
    groups = None


def _mean_std(values) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


# ---- significance ---------------------------------------------------------------------------------


def _constant_case(a: np.ndarray, b: np.ndarray, alternative: str) -> float | None:
    """p-value when the t statistic is undefined (no spread): 0 for a real difference in the tested
    direction, 1 otherwise; None when spread exists."""
    diff = float(a.mean() - b.mean())
    if np.isclose(diff, 0.0):
        return 1.0
    if alternative == "greater":
        return 0.0 if diff > 0 else 1.0
    if alternative == "less":
        return 0.0 if diff < 0 else 1.0
    return 0.0


def significance_test(
    values,
    baseline_values,
    method: str = "auto",
    alternative: str = "two-sided",
    seeds=None,
    baseline_seeds=None,
    levene_alpha: float = 0.05,
) -> dict | None:
    """A t-test of ``values`` against ``baseline_values`` (scipy.stats); None with < 2 values a side.

    ``seeds``/``baseline_seeds`` pair values by seed for the paired test (and let ``auto`` choose
    it when both ran the same seeds). Returns {method, test, t, p, levene_p, n}: ``test`` is the
    test actually run (paired, student or welch).
    """
    from scipy import stats

    if method not in SIGNIFICANCE_METHODS:
        raise CTRBenchError(f"significance '{method}': choose one of {', '.join(SIGNIFICANCE_METHODS)}")
    a, b = np.asarray(values, dtype=float), np.asarray(baseline_values, dtype=float)
    if method == "welch_levene" and alternative == "two-sided":
        alternative = "greater"
    same_seeds = (
        seeds is not None
        and baseline_seeds is not None
        and sorted(map(str, seeds)) == sorted(map(str, baseline_seeds))
    )
    if method == "auto":
        method = "paired" if (same_seeds or (seeds is None and len(a) == len(b))) else "welch"
    if method == "paired" and seeds is not None and baseline_seeds is not None:
        base = {str(s): v for s, v in zip(baseline_seeds, b)}
        common = [(v, base[str(s)]) for s, v in zip(seeds, a) if str(s) in base]
        a = np.asarray([x for x, _ in common])
        b = np.asarray([y for _, y in common])
    if len(a) < 2 or len(b) < 2 or (method == "paired" and len(a) != len(b)):
        return None
    result = {"method": method, "levene_p": None, "n": (len(a), len(b))}
    if method == "paired":
        d = a - b
        if np.allclose(d, d[0]):
            return {
                **result,
                "test": "paired",
                "t": math.copysign(math.inf, d[0]) if d[0] else 0.0,
                "p": _constant_case(a, b, alternative),
            }
        res = stats.ttest_rel(a, b, alternative=alternative)
        return {**result, "test": "paired", "t": float(res.statistic), "p": float(res.pvalue)}
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return {**result, "test": "welch", "t": 0.0, "p": _constant_case(a, b, alternative)}
    equal_var = False
    if method == "welch_levene":
        lev = stats.levene(a, b)
        result["levene_p"] = float(lev.pvalue) if np.isfinite(lev.pvalue) else None
        equal_var = result["levene_p"] is not None and result["levene_p"] >= levene_alpha
    res = stats.ttest_ind(a, b, equal_var=equal_var, alternative=alternative)
    return {
        **result,
        "test": "student" if equal_var else "welch",
        "t": float(res.statistic),
        "p": float(res.pvalue),
    }


def significance(
    values,
    baseline_values,
    paired: bool | None = None,
    alternative: str = "two-sided",
    method: str | None = None,
) -> float | None:
    """p-value of a t-test between two lists of per-seed metrics (scipy.stats).

    Paired (``ttest_rel``) when ``paired`` is true, or when None and both lists have the same length
    (same seeds); otherwise Welch's ``ttest_ind(equal_var=False)``. ``method`` (paired, welch,
    welch_levene, auto) overrides ``paired``. None with fewer than 2 values.
    """
    if method is None:
        method = "auto" if paired is None else ("paired" if paired else "welch")
    res = significance_test(values, baseline_values, method, alternative)
    return None if res is None else res["p"]


# ---- the table ---------------------------------------------------------------------------------------


def build_table(
    records: list[dict],
    baseline: str | None = None,
    datasets=None,
    models=None,
    split: str = "test",
    significance: str | None = None,
    alpha: float = 0.05,
    efficiency: bool = False,
    mark_best: bool = False,
    latest: bool = False,
    targets: dict | None = None,
) -> dict:
    """A table structure: {datasets, models, cells{(m, d): {...}}, notes} with RelaImp filled in (and
    p-values, best marks and efficiency columns when asked). Rows are configs (see :func:`aggregate`);
    ``latest`` keeps the newest config of each expid and ``notes`` says what was left out. ``targets``
    (a loaded targets file, ``reproduce.load_targets``) adds a verdict per cell against the paper's
    number (see :func:`add_verdicts`)."""
    cells = aggregate(records, split, datasets, models, latest)
    if not cells:
        raise CTRBenchError("no run records match; run experiments first or check --results/--datasets")
    ds_order = list(datasets) if datasets else list(OrderedDict.fromkeys(d for _, d in cells))
    model_order = list(OrderedDict.fromkeys(m for m, _ in cells))
    if models:
        first = {}
        for (m, _), cell in cells.items():
            g = cell["group"]
            first.setdefault(m, min(models.index(x) for x in (g.label, g.name, g.expid) if x in models))
        model_order.sort(key=first.__getitem__)
    baseline = _baseline_label(baseline, cells, model_order)
    if significance and significance not in SIGNIFICANCE_METHODS:
        raise CTRBenchError(f"--significance {significance}: choose one of {', '.join(SIGNIFICANCE_METHODS)}")
    out = {}
    for (m, d), cell in cells.items():
        group = cell["group"]
        row = {"n": len(cell["seeds"]), "params": cell.get("params"), "seeds": cell["seeds"]}
        row.update(name=group.name, expid=group.expid, config_key=group.config_key)
        for metric in ("AUC", "logloss"):
            if cell.get(metric):
                row[metric], row[metric + "_std"] = _mean_std(cell[metric])
                row[metric + "_values"] = list(cell[metric])
        for k, _ in EFFICIENCY:
            if cell.get(k):
                row[k] = float(np.mean(cell[k]))
        out[(m, d)] = row
    na: set = set()
    if baseline:
        for (m, d), row in out.items():
            base = out.get((baseline, d))
            if base and "AUC" in row and "AUC" in base:
                row["relaimp_auc"] = relaimp_auc(row["AUC"], base["AUC"])
                if row["relaimp_auc"] is None:
                    na.add("auc")
            if base and "logloss" in row and "logloss" in base:
                row["relaimp_loss"] = relaimp_loss(row["logloss"], base["logloss"])
                if row["relaimp_loss"] is None:
                    na.add("loss")
            if not significance or not base or m == baseline:
                continue
            for metric, better in (("AUC", "greater"), ("logloss", "less")):
                if metric not in row or metric not in base:
                    continue
                alternative = better if significance == "welch_levene" else "two-sided"
                res = significance_test(
                    row[metric + "_values"],
                    base[metric + "_values"],
                    significance,
                    alternative,
                    row["seeds"],
                    base["seeds"],
                )
                if res is None:
                    continue
                row[metric + "_p"], row[metric + "_t"], row[metric + "_test"] = (
                    res["p"],
                    res["t"],
                    res["test"],
                )
                row[metric + "_sig"] = res["p"] < alpha
    if mark_best:
        for d in ds_order:
            for metric, best_high in (("AUC", True), ("logloss", False)):
                values = sorted(
                    {
                        round(out[(m, d)][metric], 12)
                        for m in model_order
                        if (m, d) in out and metric in out[(m, d)]
                    },
                    reverse=best_high,
                )
                for m in model_order:
                    row = out.get((m, d))
                    if row is None or metric not in row:
                        continue
                    rank = values.index(round(row[metric], 12))
                    if rank < 2 and len(values) > 1:
                        row[metric + "_mark"] = "best" if rank == 0 else "second"
    return {
        "datasets": ds_order,
        "models": model_order,
        "cells": out,
        "notes": cells.groups.notes(split),
        "relaimp_na": sorted(na),
        "targets": targets,
        "verdicts": add_verdicts(out, targets) if targets else None,
        "baseline": baseline,
        "split": split,
        "significance": significance if baseline else None,
        "alpha": alpha,
        "efficiency": efficiency,
        "mark_best": mark_best,
    }


def add_verdicts(cells: dict, targets: dict) -> list[dict]:
    """Each cell of the table that the targets file has a paper number for gets ``verdict`` (see
    ``verdicts.cell_verdict``): the targets column whose dataset_id is the cell's dataset, the targets
    row named by the cell's label, report name or expid. Returns the verdicts as a list for the JSON
    file beside the table."""
    from .verdicts import cell_verdict, tolerances

    tol, alpha = tolerances(targets), float(targets.get("alpha", 0.05))
    columns = {}
    for col, spec in targets["datasets"].items():
        columns.setdefault(spec["dataset_id"], []).append(col)
    found = []
    for (label, dataset), row in cells.items():
        names = [n for n in (label, row.get("name"), row.get("expid")) if n in targets["paper"]]
        for col in columns.get(dataset, []):
            paper = next(
                ((targets["paper"][n] or {}).get(col) for n in names if (targets["paper"][n] or {}).get(col)),
                None,
            )
            if not paper:
                continue
            values = {m: row.get(m + "_values") or [] for m in ("AUC", "logloss")}
            v = cell_verdict(values, paper, tol, alpha)
            if v is None:
                continue
            row["verdict"] = v
            found.append(
                {
                    "model": label,
                    "dataset_id": dataset,
                    "column": col,
                    "seeds": row["seeds"],
                    "verdict": v["verdict"],
                    "seeds_needed": v["seeds_needed"],
                    "metrics": v["metrics"],
                }
            )
            break
    return found


def verdicts_payload(table: dict) -> dict:
    """The verdicts of a table built with ``targets``, for ``<table>.verdicts.json``."""
    from .verdicts import tolerances

    targets = table["targets"]
    return {
        "table": targets["name"],
        "targets": targets.get("_path"),
        "tolerance": tolerances(targets),
        "alpha": float(targets.get("alpha", 0.05)),
        "cells": table["verdicts"],
    }


def verdicts_path(table_path: str) -> str:
    """``tables/t4.md`` -> ``tables/t4.verdicts.json``."""
    return os.path.splitext(table_path)[0] + ".verdicts.json"


def _baseline_label(baseline: str | None, cells, labels: list[str]) -> str | None:
    """The row that ``baseline`` names: a row label, else the one row whose report name or expid it is."""
    if not baseline or baseline in labels:
        return baseline
    named = list(
        OrderedDict.fromkeys(
            m for (m, _), c in cells.items() if baseline in (c["group"].name, c["group"].expid)
        )
    )
    if len(named) == 1:
        return named[0]
    if named:
        raise CTRBenchError(
            f"--baseline {baseline} names {len(named)} configs: {'; '.join(named)}; give one of these "
            f"labels, or --latest to keep the newest config of each expid"
        )
    raise CTRBenchError(f"--baseline {baseline} has no records; models with records: {', '.join(labels)}")


def _fmt(row, metric, digits, pct=False):
    if row is None or metric not in row:
        return "–"
    scale = 100.0 if pct else 1.0
    text = f"{row[metric] * scale:.{digits}f}"
    if row.get("n", 1) > 1:
        text += f" ± {row[metric + '_std'] * scale:.{digits}f}"
    return text


def _relaimp(row, key):
    if not row or key not in row:
        return "–"
    return "n/a" if row[key] is None else f"{row[key]:+.2f}%"


def _params(n):
    if not n:
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _efficiency(row, key):
    if row is None or row.get(key) is None:
        return "–"
    value = row[key]
    if key == "seconds_per_epoch":
        return f"{value:.2f}" if value < 10 else f"{value:,.1f}"
    if key == "infer_ms_per_100":
        return f"{value:.3f}"
    return f"{value:,.0f}"


def _pvalue(row):
    if row is None or "AUC_p" not in row:
        return "–"
    p = row["AUC_p"]
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _grid(table: dict) -> tuple[list[str], list[list[tuple[str, str | None, bool]]]]:
    """Header and body cells as (text, mark, significant)."""
    sig, eff = table.get("significance"), table.get("efficiency")
    header = ["Model"]
    for d in table["datasets"]:
        header += [f"{d} Logloss", f"{d} AUC(%)", f"{d} #Params"]
        if table["baseline"]:
            header += [f"{d} RelaImp Loss", f"{d} RelaImp AUC"]
        if sig:
            header += [f"{d} p(AUC)"]
        if eff:
            header += [f"{d} {label}" for _, label in EFFICIENCY]
        if table.get("targets"):
            header += [f"{d} verdict"]
    body = []
    for m in table["models"]:
        line = [(m, None, False)]
        for d in table["datasets"]:
            row = table["cells"].get((m, d))
            get = (
                (lambda key, default=None: row.get(key, default))
                if row
                else (lambda key, default=None: default)
            )
            line += [
                (_fmt(row, "logloss", 6), get("logloss_mark"), bool(get("logloss_sig", False))),
                (_fmt(row, "AUC", 4, pct=True), get("AUC_mark"), bool(get("AUC_sig", False))),
                (_params(get("params")), None, False),
            ]
            if table["baseline"]:
                line += [
                    (_relaimp(row, "relaimp_loss"), None, False),
                    (_relaimp(row, "relaimp_auc"), None, False),
                ]
            if sig:
                line += [(_pvalue(row), None, False)]
            if eff:
                line += [(_efficiency(row, key), None, False) for key, _ in EFFICIENCY]
            if table.get("targets"):
                from .verdicts import verdict_text

                line += [(verdict_text(get("verdict")), None, False)]
        body.append(line)
    return header, body


def rows(table: dict) -> tuple[list[str], list[list[str]]]:
    """Header and plain-text body (no marks; a significant cell ends in '*')."""
    header, body = _grid(table)
    return header, [[text + ("*" if sig else "") for text, _, sig in line] for line in body]


def _md_cell(text, mark, sig):
    if mark == "best":
        text = f"**{text}**"
    elif mark == "second":
        text = f"<u>{text}</u>"
    return text + ("\\*" if sig else "")


#: Characters that LaTeX reads as commands, and how to print them as text.
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
}


def _latex_escape(s: str) -> str:
    """``s`` as LaTeX text: every special character escaped (a model or dataset name may hold any)."""
    return "".join(LATEX_ESCAPES.get(c, c) for c in s)


def _latex_cell(text, mark, sig):
    text = _latex_escape(text)
    if mark == "best":
        text = rf"\textbf{{{text}}}"
    elif mark == "second":
        text = rf"\underline{{{text}}}"
    return text + (r"$^{*}$" if sig else "")


def csv_fields(table: dict) -> list[str]:
    """The CSV's columns: one line per (model, dataset), numbers only."""
    fields = [
        "model",
        "expid",
        "dataset_id",
        "n",
        "seeds",
        "logloss",
        "logloss_std",
        "AUC",
        "AUC_std",
        "params",
    ]
    if table["baseline"]:
        fields += ["baseline", "relaimp_loss", "relaimp_auc"]
    if table.get("significance"):
        fields += ["AUC_p", "logloss_p"]
    if table.get("efficiency"):
        fields += [key for key, _ in EFFICIENCY]
    if table.get("targets"):
        fields += ["verdict", "seeds_needed"]
    return fields


def render_csv(table: dict) -> str:
    """The table as CSV a program can read: one line per (model, dataset), numbers as numbers (AUC and
    Logloss as recorded, #params as an integer, RelaImp in percent, empty where there is no value)."""
    fields = csv_fields(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for m in table["models"]:
        for d in table["datasets"]:
            row = table["cells"].get((m, d))
            if row is None:
                continue
            verdict = row.get("verdict") or {}
            values = {
                **row,
                "model": m,
                "dataset_id": d,
                "seeds": " ".join(map(str, row["seeds"])),
                "baseline": table["baseline"],
                "verdict": verdict.get("verdict"),
                "seeds_needed": verdict.get("seeds_needed"),
            }
            if row["n"] < 2:
                values["AUC_std"] = values["logloss_std"] = None
            writer.writerow([_csv_value(values.get(f)) for f in fields])
    return buf.getvalue()


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return value


def render(table: dict, fmt: str = "md") -> str:
    if fmt == "csv":
        return render_csv(table)
    header, grid = _grid(table)
    notes = []
    if table.get("significance"):
        test = {
            "auto": "paired t-test on shared seeds, else Welch's",
            "paired": "paired t-test",
            "welch": "Welch's t-test",
            "welch_levene": "Levene's test, then one-tailed Student's/Welch's t-test",
        }
        notes.append(
            f"* p < {table['alpha']:g} against {table['baseline']} over seeds ({test[table['significance']]})"
        )
    if table.get("mark_best"):
        notes.append("best in bold, second best underlined")
    notes += [RELAIMP_NA[k] for k in table.get("relaimp_na") or ()]
    if fmt == "latex":
        cols = "l" + "r" * (len(header) - 1)
        lines = [
            rf"\begin{{tabular}}{{{cols}}}",
            r"\toprule",
            " & ".join(_latex_escape(h) for h in header) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(_latex_cell(*c) for c in line) + r" \\" for line in grid]
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [f"% {n}" for n in notes]
        lines += [f"% left out: {n}" for n in table.get("notes") or []]
        return "\n".join(lines) + "\n"
    if fmt != "md":
        raise CTRBenchError(f"--format {fmt}: choose md, csv or latex")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(*c) for c in line) + " |" for line in grid]
    if notes:
        lines += ["", "; ".join(notes).replace("* p", "\\* p", 1)]
    if table.get("notes"):
        lines += ["", "Left out of the table:", ""] + [f"- {n}" for n in table["notes"]]
    return "\n".join(lines) + "\n"


def write_table(path: str, text: str, results: str | None = None) -> None:
    """Write a rendered table to ``path`` (via a temporary file and a rename, so an interrupted write
    never leaves half a table). Refused when ``path`` is the ``results`` file it was built from or any
    existing file of JSON records (run records, a sweep ledger): the table would replace them."""
    if results and os.path.exists(path) and os.path.exists(results) and os.path.samefile(path, results):
        raise CTRBenchError(
            f"--out {path} is the run records file given as --results; writing the table "
            f"there would replace the records: choose another file, e.g. "
            f"{os.path.splitext(path)[0]}_table.md"
        )
    if os.path.isdir(path):
        raise CTRBenchError(
            f"--out {path} is a directory; give a file name, e.g. {os.path.join(path, 'table.md')}"
        )
    if looks_like_records(path):
        raise CTRBenchError(
            f"--out {path} holds JSON records (a run records file or a ledger); writing the "
            f"table there would replace them: choose another file, e.g. "
            f"{os.path.splitext(path)[0]}_table.md"
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise CTRBenchError(f"cannot write the table to {path}: {exc.strerror}")


def write_verdicts(table_path: str, table: dict) -> str | None:
    """Write the verdicts of a table built with ``targets`` beside it (:func:`verdicts_path`); returns
    the path, or None when the table has no verdicts."""
    if not table.get("targets"):
        return None
    path = verdicts_path(table_path)
    if looks_like_records(path):
        raise CTRBenchError(
            f"{path} holds JSON records; the verdicts would replace them: choose another --out"
        )
    try:
        atomic_write_json(path, verdicts_payload(table), indent=1)
    except OSError as exc:
        raise CTRBenchError(f"cannot write the verdicts to {path}: {exc.strerror}")
    return path
