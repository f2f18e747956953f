"""Reproduce a paper's table from a targets file (``results/targets/<name>.yaml``).

A targets file is data: the table's rows (expid templates), columns (datasets), shared settings and the
paper's published numbers. ``reproduce`` first resolves every cell (row x column x seed): an unknown expid
or model, or a setting the config or the model refuses, is one error line before any cell runs. It then
runs every cell through the normal run path, appends the records to ``<out>/<name>_runs.jsonl`` (a cell
whose config is already recorded is skipped, so an interrupted reproduction resumes), and writes:

- ``<out>/<name>.md``: one table per column (dataset), our numbers (mean ± std over seeds) beside the
  paper's, the difference, a verdict per cell, #params, RelaImp and the significance against the
  baseline row when the file names one; a column whose data is missing is reported as missing, never
  skipped silently;
- ``<out>/<name>.csv``: one line per cell, numbers only (AUC as a fraction, counts as integers);
- ``<out>/<name>.verdicts.json``: the verdicts and the numbers they rest on.

A cell's values are the seeds of the config this file asks for (``records.group_records``). Its verdict
against the paper's number (``stats.verdict``, per metric with a paper number and a tolerance):
*reproduced* when a TOST equivalence test within the tolerance, with the seeds' measured std, passes at
``alpha``; *not reproduced* when the paper's number lies outside the ``1 - alpha`` confidence interval by
more than the tolerance; *underpowered* otherwise, with the seeds that would decide it at the measured std
(one seed is always underpowered). A cell is not reproduced when any metric is, reproduced when all are.
``--smoke`` runs every cell for one epoch on the tiny fixture named by each column and fails unless the
table is complete.

Format::

    name: ibnet_table4
    title: "..."
    metrics: [logloss, AUC]
    auc_tolerance: 0.1                  # AUC points (%), for AUC and gAUC; 0.1 when absent
    tolerance: {AUC: 0.001, logloss: 0.001}   # optional, per metric in its own units (AUC as a fraction);
                                        # wins over auc_tolerance; default verdicts.DEFAULT_TOLERANCE
    alpha: 0.05                         # optional: the verdicts' level
    baseline: {avazu: MaskNet}          # optional, per column (a row may name its own: rows.X.baseline)
    significance: paired                # paired | welch | welch_levene
    seeds: [2023]
    datasets: {avazu: {dataset_id: Avazu_x4_001, smoke: tiny_cat}}
    set: {all: {...}, avazu: {...}}
    rows: {DCN: {expid: DCN_default, set: {all: {...}, avazu: {...}}}}
    paper: {DCN: {avazu: {logloss: 0.372216, AUC: 79.3064, params: 75.8M}}}
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field

import numpy as np
import yaml

from . import config as config_mod
from .errors import USER_ERRORS, CTRBenchError
from .records import config_key, find_recorded, group_records, read_records
from .report import RELAIMP_NA, relaimp_auc
from .util import atomic_write, atomic_write_json
from .verdicts import as_fraction, cell_verdict, is_auc, tolerances, verdict_text

SMOKE_SETS = {"epochs": 1, "batch_size": 256, "eval_batch_size": 1024, "verbose": 0}


@dataclass
class Cell:
    row: str
    column: str
    expid: str
    seed: int
    sets: dict = field(default_factory=dict)


def _flatten_sets(block, column: str) -> dict:
    block = block or {}
    out = dict(block.get("all") or {})
    out.update(block.get(column) or {})
    return out


def load_targets(path: str) -> dict:
    targets = config_mod.read_yaml(path)
    for key in ("name", "datasets", "rows"):
        if key not in targets:
            raise CTRBenchError(
                f"targets file {path} lacks '{key}'; see benchmark/reproduce.py for the format"
            )
    for col, spec in targets["datasets"].items():
        if not isinstance(spec, dict) or "dataset_id" not in spec:
            raise CTRBenchError(f"{path}: datasets.{col} needs a dataset_id (and a smoke fixture)")
    for row, spec in targets["rows"].items():
        if not isinstance(spec, dict) or "expid" not in spec:
            raise CTRBenchError(f"{path}: rows.{row} needs an expid template")
    tol = targets.get("tolerance")
    if tol is not None:
        bad = (
            [f"tolerance: {tol!r}"]
            if not isinstance(tol, dict)
            else [
                f"tolerance.{m}: {v!r}"
                for m, v in tol.items()
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0
            ]
        )
        if bad:
            raise CTRBenchError(
                f"{path}: {bad[0]} is not a positive number per metric; write e.g. "
                f"tolerance: {{AUC: 0.001, logloss: 0.001}} (AUC as a fraction)"
            )
    alpha = targets.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise CTRBenchError(f"{path}: alpha: {alpha!r} must lie between 0 and 1, e.g. alpha: 0.05")
    targets.setdefault("metrics", ["logloss", "AUC"])
    targets.setdefault("seeds", [2023])
    targets.setdefault("paper", {})
    targets["_path"] = path
    return targets


def _select(names, wanted, what, path):
    if not wanted:
        return list(names)
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise CTRBenchError(f"{what} {', '.join(unknown)} not in {path} (has: {', '.join(names)})")
    return [n for n in names if n in wanted]


def plan(targets: dict, datasets=None, models=None, seeds=None, smoke: bool = False) -> list[Cell]:
    cells = []
    columns = _select(list(targets["datasets"]), datasets, "dataset(s)", targets["_path"])
    rows = _select(list(targets["rows"]), models, "row(s)", targets["_path"])
    for column in columns:
        ds = targets["datasets"][column]
        for row in rows:
            spec = targets["rows"][row]
            # a row may pin its own seeds per column (the seed of the authors' log for that cell)
            row_seeds = (spec.get("seeds") or {}).get(column) if isinstance(spec.get("seeds"), dict) else None
            for seed in seeds or row_seeds or targets["seeds"]:
                sets = {"dataset_id": ds["dataset_id"]}
                sets.update(_flatten_sets(targets.get("set"), column))
                sets.update(_flatten_sets(spec.get("set"), column))
                sets.update(
                    {
                        "seed": int(seed),
                        "report_name": row,
                        "table_column": column,
                        "table_name": targets["name"],
                    }
                )
                if smoke:
                    sets.update(SMOKE_SETS)
                    sets["dataset_id"] = ds.get("smoke", "tiny")
                cells.append(Cell(row, column, spec["expid"].format(dataset=column), int(seed), sets))
    return cells


def _as_set_args(sets: dict) -> list[str]:
    return [
        f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
        for k, v in sets.items()
    ]


def resolve_cells(
    cells: list[Cell], config_dir: str, data_root: str | None = None, gpu: int | None = None
) -> tuple[list[tuple[Cell, dict]], dict]:
    """Each cell's resolved config: ([(cell, params)], {(row, column): error}) for the cells whose expid,
    model or settings are unknown or wrong (the config's and the model's own checks)."""
    resolved, errors = [], {}
    for cell in cells:
        sets = dict(cell.sets)
        if gpu is not None:
            sets["gpu"] = gpu
        try:
            resolved.append(
                (
                    cell,
                    config_mod.load_config(
                        config_dir,
                        cell.expid,
                        _as_set_args(sets),
                        data_root,
                        overrides_from=f"the targets cell {cell.row} / {cell.column}",
                    ),
                )
            )
        except USER_ERRORS as exc:
            errors.setdefault((cell.row, cell.column), str(exc))
    return resolved, errors


def unresolved_error(path: str, errors: dict) -> CTRBenchError:
    """One line for the cells that do not resolve: the first one's error, how many more, and that
    nothing ran."""
    (row, column), message = next(iter(errors.items()))
    first = message.strip().splitlines()[0] if message.strip() else message
    more = len(errors) - 1
    also = f"; {more} more cell(s) fail too ('ctrbench reproduce {path} --check' lists them)" if more else ""
    return CTRBenchError(f"{path}: cell {row} / {column}: {first}{also}; no cell ran")


def run_cells(
    resolved: list[tuple[Cell, dict]],
    results_path: str,
    console=None,
    quiet: bool = True,
    keys: dict | None = None,
) -> dict:
    """Run every resolved cell not yet recorded; returns {(row, column): status} for cells that did not
    run. ``keys``, when given, receives each cell's config key (``records.config_key``: the config
    without the seed), so the table shows the records of the config this targets file asks for."""
    from .runner import RunOptions, run

    recorded = read_records(results_path)
    status: dict = {}
    missing_data: dict = {}
    for i, (cell, params) in enumerate(resolved, 1):
        key = (cell.row, cell.column)
        if keys is not None:
            keys[key] = config_key({"config": params})
        if find_recorded(recorded, params) is not None:
            continue
        if params["dataset_id"] in missing_data:
            status[key] = missing_data[params["dataset_id"]]
            continue
        if console is not None:
            console.print(
                f"[{i}/{len(resolved)}] {cell.row} on {cell.column} (seed {cell.seed}): {cell.expid}",
                highlight=False,
            )
        try:
            run(params, RunOptions(results=results_path, resume=True, quiet=quiet, console=console))
        except USER_ERRORS as exc:  # the config's or the model's own check
            message = str(exc)
            if "is missing" in message:
                missing_data[params["dataset_id"]] = f"missing data: {message}"
                status[key] = missing_data[params["dataset_id"]]
            else:
                status[key] = f"error: {message}"
    return status


def check_cells(
    cells: list[Cell], config_dir: str, data_root: str | None = None, batch_rows: int = 64
) -> dict:
    """Resolve every cell and take one training step and one prediction with its model on one batch
    of ``batch_rows`` rows of the cell's data (no epochs, no records): catches unknown expids, bad
    settings and shape errors in minutes before a long run. Identical configurations (other seeds)
    are checked once. Returns {(row, column): error} for the cells that fail."""
    import torch

    from .runner import prepare_run
    from .train import Trainer

    resolved, errors = resolve_cells(cells, config_dir, data_root, gpu=-1)
    checked: set = set()
    for cell, params in resolved:
        key = (cell.row, cell.column)
        if key in errors:
            continue
        try:
            fingerprint = config_key({"config": params})
            if fingerprint in checked:
                continue
            checked.add(fingerprint)
            setup = prepare_run(
                params,
                splits=("train",),
                require=("train",),  # data reused by build key
                loader_params={"shuffle": False, "batch_size": batch_rows},
            )
            batch, model = next(iter(setup.loaders["train"])), setup.model
            Trainer(model, dict(params, verbose=0, resume_state=False)).train_step(batch)
            model.eval()
            with torch.no_grad():
                y_pred = model(batch)["y_pred"]
            if not bool(torch.isfinite(y_pred).all()):
                raise CTRBenchError("non-finite predictions after one step")
        except USER_ERRORS as exc:  # the config's or the model's own check
            errors[key] = str(exc)
        except Exception as exc:  # a model that cannot run is what the check is for
            errors[key] = f"{type(exc).__name__}: {exc}"
    return errors


# --------------------------------------------------------------------------------------------------
# The table


def _pct(auc):
    return auc * 100.0 if auc is not None and auc <= 1.0 else auc


def collect(targets: dict, records: list[dict], keys: dict | None = None, notes: list | None = None) -> dict:
    """(row, column) -> {metric: [values over seeds], params, seeds}, from this table's records.

    Records are grouped by what was run (``records.group_records``): a cell's values are distinct seeds
    of one config, a re-run of a seed replaces the earlier record, a record without test metrics is no
    seed. Where a cell was run with several configs (the targets file changed between runs), the cell
    shows the config ``keys`` names for it (this run's plan), else the newest; ``notes`` receives a line
    for each config and record left out."""
    mine = [r for r in records if (r.get("config") or {}).get("table_name") == targets["name"]]
    groups = group_records(mine)
    per_cell: dict = {}
    for g in groups:
        per_cell.setdefault((g.name, g.records[0]["config"].get("table_column")), []).append(g)
    cells: dict = {}
    for key, options in per_cell.items():
        wanted = (keys or {}).get(key)
        chosen = next((g for g in options if g.config_key == wanted), None)
        if chosen is None:
            chosen = max(options, key=lambda g: g.order)
        for g in options:
            if g is not chosen and notes is not None:
                notes.append(
                    f"{key[0]} / {key[1]}: {len(g.seeds)} record(s) of another config of {g.expid} "
                    f"({_differing_text(g)}) not in the table"
                )
        if notes is not None:
            notes.extend(f"{key[0]} / {key[1]}: {d}" for d in chosen.dropped)
        cell = cells[key] = {"seeds": list(chosen.seeds), "params": chosen.records[-1].get("params")}
        for rec in chosen.records:
            values = {k: v for k, v in rec["test"].items() if isinstance(v, (int, float))}
            for m in targets["metrics"]:  # efficiency metrics live at the top of a record
                if m not in values and isinstance(rec.get(m), (int, float)):
                    values[m] = rec[m]
            for m, v in values.items():
                cell.setdefault(m, []).append(float(v))
    if notes is not None:
        notes.extend(
            f"{r.get('report_name')} / {(r.get('config') or {}).get('table_column')} seed {r.get('seed')}: "
            f"no test metrics, not a seed"
            for r in groups.incomplete
        )
    return cells


def _differing_text(group) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.differing.items()) or "same settings, another version"


def _pvalue(targets, cell, base):
    """p-value of the row's AUCs against the baseline row's (report.significance_test: paired by seed,
    Welch, or Levene + one-tailed Welch as the targets file asks)."""
    from .report import significance_test

    res = significance_test(
        cell["AUC"],
        base["AUC"],
        targets.get("significance", "auto"),
        seeds=cell.get("seeds"),
        baseline_seeds=base.get("seeds"),
    )
    return None if res is None else res["p"]


def parse_count(value) -> int | None:
    """A printed parameter count as an integer: '78.7M' -> 78700000, '6K' -> 6000, '6,083,278'."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).replace(",", "").strip()
    scale = {"K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}.get(text[-1:].upper())
    try:
        return round(float(text[:-1]) * scale) if scale else int(float(text))
    except ValueError:
        return None


# ---- the table --------------------------------------------------------------------------------------


def table_cells(targets: dict, cells: dict, status: dict, columns=None, rows=None, notes=None) -> list[dict]:
    """One dict of numbers per (row, column), in table order: our mean and std per metric (AUC as a
    fraction), the paper's number (AUC as a fraction), the difference, the verdict, #params (ours and
    the paper's as integers), RelaImp AUC against the baseline row and the p-value of the significance
    test. ``notes`` receives the table's footnotes."""
    columns = columns or list(targets["datasets"])
    rows = rows or list(targets["rows"])
    tol, alpha = tolerances(targets), float(targets.get("alpha", 0.05))
    baseline = targets.get("baseline") or {}
    row_base = {row: spec.get("baseline") for row, spec in targets["rows"].items() if spec.get("baseline")}
    relaimp_na: set = set()
    out = []
    for col in columns:
        for row in rows:
            cell = cells.get((row, col)) or {}
            paper = (targets["paper"].get(row) or {}).get(col) or {}
            entry = {
                "row": row,
                "column": col,
                "dataset_id": targets["datasets"][col]["dataset_id"],
                "n": len(cell.get("seeds") or []),
                "seeds": list(cell.get("seeds") or []),
                "status": status.get((row, col)),
                "params": cell.get("params"),
                "params_paper": parse_count(paper.get("params")),
                "metrics": {},
                "baseline": row_base.get(row) or baseline.get(col),
                "relaimp_auc": None,
                "relaimp_na": False,
                "p_vs_baseline": None,
            }
            for m in targets["metrics"]:
                values = [v for v in cell.get(m) or [] if v is not None]
                ours = float(np.mean(values)) if values else None
                ref = paper.get(m) if isinstance(paper.get(m), (int, float)) else None
                std = float(np.std(values, ddof=1)) if len(values) > 1 else None
                if is_auc(m) and values and max(values) > 1.0:  # a record in percent
                    ours, std = ours / 100.0, None if std is None else std / 100.0
                ref = as_fraction(m, ref)
                entry["metrics"][m] = {
                    "ours": ours,
                    "std": std,
                    "paper": ref,
                    "diff": ours - ref if ours is not None and ref is not None else None,
                }
            entry["verdict"] = cell_verdict(cell, paper, tol, alpha) if cell else None
            base_row = entry["baseline"]
            base = cells.get((base_row, col)) if base_row else None
            if cell.get("AUC") and base and base.get("AUC"):
                entry["relaimp_auc"] = relaimp_auc(np.mean(cell["AUC"]), np.mean(base["AUC"]))
                if entry["relaimp_auc"] is None:
                    entry["relaimp_na"] = True
                    relaimp_na.add((base_row, col))
                if row != base_row:
                    entry["p_vs_baseline"] = _pvalue(targets, cell, base)
            out.append(entry)
    if notes is not None:
        if relaimp_na:
            where = ", ".join(f"{b} on {c}" for b, c in sorted(relaimp_na))
            notes.append(RELAIMP_NA["auc"] + f" ({where})")
        notes.append(
            "verdict: reproduced = TOST equivalence to the paper's number within the tolerance passes at "
            f"alpha = {alpha:g} (seeds' measured std); not reproduced = the paper's number lies outside the "
            f"{1 - alpha:.0%} confidence interval by more than the tolerance; underpowered = neither "
            "(one seed always). Tolerances: " + ", ".join(f"{m} {v:g}" for m, v in tol.items())
        )
    return out


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _digits(metric: str) -> int:
    return 4 if is_auc(metric) else (6 if "loss" in metric.lower() else 2)


def _metric_text(entry: dict, m: str) -> tuple[str, str, str]:
    """Ours (mean ± std), the paper's and the difference, as the paper prints them (AUC in %)."""
    v, scale = entry["metrics"][m], (100.0 if is_auc(m) else 1.0)
    digits = _digits(m)
    if v["ours"] is None:
        ours = entry["status"].split(":")[0] if entry["status"] else "not run"
    else:
        ours = f"{v['ours'] * scale:.{digits}f}"
        if v["std"] is not None:
            ours += f" ± {v['std'] * scale:.{digits}f}"
    paper = _num(None if v["paper"] is None else v["paper"] * scale, digits)
    diff = "–" if v["diff"] is None else f"{v['diff'] * scale:+.4f}"
    return ours, paper, diff


def _count_text(n) -> str:
    return f"{n:,}" if n else "–"


def dataset_table(targets: dict, entries: list[dict], column: str) -> tuple[list[str], list[list[str]]]:
    """Header and body of one column's (dataset's) table: a row per model."""
    mine = [e for e in entries if e["column"] == column]
    bases = list(dict.fromkeys(e["baseline"] for e in mine if e["baseline"]))
    header = ["Model"]
    for m in targets["metrics"]:
        header += [m + " (%)" if is_auc(m) else m, f"{m} (paper)", f"Δ{m}"]
    header += ["verdict", "#Params", "#Params (paper)"]
    if len(bases) == 1:
        header += [f"RelaImp AUC vs {bases[0]}", f"p vs {bases[0]}"]
    elif bases:
        header += ["baseline", "RelaImp AUC", "p vs baseline"]
    body = []
    for e in mine:
        line = [e["row"]]
        for m in targets["metrics"]:
            line += list(_metric_text(e, m))
        line += [verdict_text(e["verdict"]), _count_text(e["params"]), _count_text(e["params_paper"])]
        if bases:
            rel = e["relaimp_auc"]
            rel_text = "n/a" if e["relaimp_na"] else ("–" if rel is None else f"{rel:+.2f}%")
            p = e["p_vs_baseline"]
            same = e["row"] == e["baseline"] or not e["n"] or rel is None and not e["relaimp_na"]
            p_text = "–" if same else ("n<2" if p is None else f"{p:.3g}")
            line += ([e["baseline"] or "–"] if len(bases) > 1 else []) + [rel_text, p_text]
        body.append(line)
    return header, body


CSV_FIELDS = (
    "row",
    "column",
    "dataset_id",
    "n",
    "seeds",
    "verdict",
    "seeds_needed",
    "params",
    "params_paper",
    "baseline",
    "relaimp_auc",
    "p_vs_baseline",
    "status",
)


def render_csv(targets: dict, entries: list[dict]) -> str:
    """One line per cell, numbers only (AUC as a fraction, counts as integers, RelaImp in percent)."""
    metric_fields = []
    for m in targets["metrics"]:
        metric_fields += [m, f"{m}_std", f"{m}_paper", f"{m}_diff"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(CSV_FIELDS[:5]) + metric_fields + list(CSV_FIELDS[5:]))
    for e in entries:
        values = []
        for m in targets["metrics"]:
            v = e["metrics"][m]
            values += [v["ours"], v["std"], v["paper"], v["diff"]]
        verdict = e["verdict"] or {}
        row = [e["row"], e["column"], e["dataset_id"], e["n"], " ".join(map(str, e["seeds"]))] + values
        row += [verdict.get("verdict"), verdict.get("seeds_needed"), e["params"], e["params_paper"]]
        row += [e["baseline"], e["relaimp_auc"], e["p_vs_baseline"], e["status"]]
        writer.writerow(["" if x is None else (f"{x:.10g}" if isinstance(x, float) else x) for x in row])
    return buf.getvalue()


def verdicts_json(targets: dict, entries: list[dict]) -> dict:
    """The machine-readable verdicts: per cell the verdict, per metric the numbers it rests on."""
    return {
        "table": targets["name"],
        "targets": targets.get("_path"),
        "tolerance": tolerances(targets),
        "alpha": float(targets.get("alpha", 0.05)),
        "cells": [
            {
                "row": e["row"],
                "column": e["column"],
                "dataset_id": e["dataset_id"],
                "seeds": e["seeds"],
                "verdict": (e["verdict"] or {}).get("verdict"),
                "seeds_needed": (e["verdict"] or {}).get("seeds_needed"),
                "metrics": (e["verdict"] or {}).get("metrics", {}),
                "status": e["status"],
            }
            for e in entries
        ],
    }


def verdict_summary(entries: list[dict]) -> str:
    """'Verdicts: reproduced 3, underpowered 2, no result 1' over the table's cells."""
    counts: dict = {}
    for e in entries:
        kind = (e["verdict"] or {}).get("verdict") or ("no paper number" if e["n"] else "no result")
        counts[kind] = counts.get(kind, 0) + 1
    return "Verdicts: " + ", ".join(f"{k} {v}" for k, v in counts.items())


def render(targets: dict, entries: list[dict], status: dict, smoke: bool, notes=()) -> str:
    """The markdown: one table per dataset (column), so a wide paper table stays readable."""
    title = targets.get("title", targets["name"]) + (" — SMOKE (tiny fixtures, 1 epoch)" if smoke else "")
    md = [f"# {title}", ""]
    if targets.get("source"):
        md += [f"Paper numbers: {targets['source']}", ""]
    for column in dict.fromkeys(e["column"] for e in entries):
        header, body = dataset_table(targets, entries, column)
        dataset_id = targets["datasets"][column]["dataset_id"]
        md += [f"## {column} ({dataset_id})", ""]
        md += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        md += ["| " + " | ".join(line) + " |" for line in body]
        md += [""]
    md += [verdict_summary(entries)]
    problems = sorted(status.items())
    if problems:
        md += ["", "Cells without results:", ""]
        md += [f"- {row} / {col}: {msg}" for (row, col), msg in problems]
    if notes:
        md += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(md) + "\n"


def check(
    path: str,
    config_dir: str = "config",
    datasets=None,
    models=None,
    smoke: bool = False,
    data_root: str | None = None,
) -> tuple[int, dict]:
    """``reproduce --check``: every cell of a targets file (one seed) through :func:`check_cells`."""
    targets = load_targets(path)
    cells = plan(targets, datasets, models, targets["seeds"][:1], smoke)
    return len(cells), check_cells(cells, config_dir, data_root)


def reproduce(
    path: str,
    out_dir: str = "results",
    config_dir: str = "config",
    datasets=None,
    models=None,
    seeds=None,
    smoke: bool = False,
    gpu: int | None = None,
    data_root: str | None = None,
    console=None,
) -> dict:
    targets = load_targets(path)
    cells = plan(targets, datasets, models, seeds, smoke)
    suffix = "_smoke" if smoke else ""
    os.makedirs(out_dir, exist_ok=True)
    results_path = os.path.join(out_dir, f"{targets['name']}{suffix}_runs.jsonl")
    resolved, errors = resolve_cells(cells, config_dir, data_root, gpu)
    if errors:  # a configuration error: before any cell runs
        raise unresolved_error(path, errors)
    keys: dict = {}
    status = run_cells(resolved, results_path, console, keys=keys)
    notes: list = []
    collected = collect(targets, read_records(results_path), keys, notes)
    columns = list(dict.fromkeys(c.column for c in cells))
    rows = list(dict.fromkeys(c.row for c in cells))
    entries = table_cells(targets, collected, status, columns, rows, notes)
    md = render(targets, entries, status, smoke, notes)
    stem = os.path.join(out_dir, f"{targets['name']}{suffix}")
    atomic_write(stem + ".md", md)
    atomic_write(stem + ".csv", render_csv(targets, entries))
    verdicts = verdicts_json(targets, entries)
    atomic_write_json(stem + ".verdicts.json", verdicts, indent=1)
    incomplete = [(c.row, c.column) for c in cells if (c.row, c.column) not in collected]
    return {
        "markdown": md,
        "path": stem + ".md",
        "csv": stem + ".csv",
        "verdicts_path": stem + ".verdicts.json",
        "verdicts": verdicts,
        "entries": entries,
        "status": status,
        "incomplete": sorted(set(incomplete)),
        "cells": collected,
    }
