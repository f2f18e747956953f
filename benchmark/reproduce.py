"""Reproduce a paper's table from a targets file (``results/targets/<name>.yaml``).

A targets file is data: the table's rows (expid templates), columns (datasets), shared settings and the
paper's published numbers. ``reproduce`` runs every cell (row x column x seed) through the normal run path,
appends the records to ``<out>/<name>_runs.jsonl`` (cells already recorded with the same config hash are
skipped, so an interrupted reproduction resumes), and writes ``<out>/<name>.md`` and ``.csv`` with our numbers
beside the paper's, the difference per cell, whether each AUC is within the tolerance, RelaImp and the
significance against the baseline row when the file names one. A column whose data is missing is reported
as missing in the table, never skipped silently. ``--smoke`` runs every cell for one epoch on the tiny
fixture named by each column and fails unless the table is complete.

Format::

    name: ibnet_table4
    title: "..."
    metrics: [logloss, AUC]
    auc_tolerance: 0.1
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


def run_cells(
    cells: list[Cell],
    results_path: str,
    config_dir: str,
    data_root: str | None = None,
    gpu: int | None = None,
    console=None,
    quiet: bool = True,
    keys: dict | None = None,
) -> dict:
    """Run every cell not yet recorded; returns {(row, column): status} for cells that did not run.
    ``keys``, when given, receives each cell's config key (``records.config_key``: the config without
    the seed), so the table shows the records of the config this targets file asks for."""
    from .runner import RunOptions, run

    recorded = read_records(results_path)
    status: dict = {}
    missing_data: dict = {}
    for i, cell in enumerate(cells, 1):
        sets = dict(cell.sets)
        if gpu is not None:
            sets["gpu"] = gpu
        key = (cell.row, cell.column)
        try:
            params = config_mod.load_config(config_dir, cell.expid, _as_set_args(sets), data_root)
        except USER_ERRORS as exc:  # the config's or the model's own check
            status[key] = f"config error: {str(exc)}"
            continue
        if keys is not None:
            keys[key] = config_key({"config": params})
        if find_recorded(recorded, params) is not None:
            continue
        if params["dataset_id"] in missing_data:
            status[key] = missing_data[params["dataset_id"]]
            continue
        if console is not None:
            console.print(
                f"[{i}/{len(cells)}] {cell.row} on {cell.column} (seed {cell.seed}): {cell.expid}",
                highlight=False,
            )
        try:
            run(params, RunOptions(results=results_path, quiet=quiet, console=console))
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

    errors: dict = {}
    checked: set = set()
    for cell in cells:
        key = (cell.row, cell.column)
        if key in errors:
            continue
        try:
            params = config_mod.load_config(config_dir, cell.expid, _as_set_args(cell.sets), data_root)
            params["gpu"] = -1
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


def table_rows(targets: dict, cells: dict, status: dict, columns=None, rows=None, notes=None):
    """Header and body of the comparison table; ``notes`` receives its footnotes."""
    relaimp_na: set = set()
    columns = columns or list(targets["datasets"])
    rows = rows or list(targets["rows"])
    tol = float(targets.get("auc_tolerance", 0.1))
    baseline = targets.get("baseline") or {}
    row_base = {row: spec.get("baseline") for row, spec in targets["rows"].items() if spec.get("baseline")}
    if row_base:
        baseline = {col: baseline.get(col) or "per-row" for col in columns}
    header = ["Model"]
    for col in columns:
        for m in targets["metrics"]:
            header += [f"{col} {m}", f"{col} {m} (paper)", f"{col} Δ{m}"]
        header += [f"{col} within ±{tol:g}", f"{col} #Params", f"{col} #Params (paper)"]
        if baseline.get(col):
            header += [f"{col} RelaImp AUC", f"{col} p vs {baseline[col]}"]
    body = []
    for row in rows:
        line = [row]
        for col in columns:
            cell = cells.get((row, col))
            paper = (targets["paper"].get(row) or {}).get(col) or {}
            note = status.get((row, col))
            within = "–"
            for m in targets["metrics"]:
                values = [v for v in (cell or {}).get(m, []) if v is not None]
                ours = float(np.mean(values)) if values else None
                ref = paper.get(m)
                if m.lower().endswith("auc") and ours is not None:
                    ours = _pct(ours)
                    ref = _pct(ref) if ref is not None else None
                if ours is None:
                    text = note.split(":")[0] if note else "not run"
                else:
                    digits = 4 if m.lower().endswith("auc") else (6 if "loss" in m.lower() else 2)
                    text = f"{ours:.{digits}f}"
                    if len(values) > 1:
                        std = float(np.std(values, ddof=1)) * (100 if m.lower().endswith("auc") else 1)
                        text += f" ± {std:.{digits}f}"
                diff = f"{ours - float(ref):+.4f}" if ours is not None and ref is not None else "–"
                if m == "AUC" and ours is not None and ref is not None:
                    within = "yes" if abs(ours - float(ref)) <= tol else "no"
                line += [text, f"{ref}" if ref is not None else "–", diff]
            params = (cell or {}).get("params")
            line += [within, f"{params:,}" if params else "–", str(paper.get("params", "–"))]
            if baseline.get(col):
                base_row = row_base.get(row, baseline[col])
                base = cells.get((base_row, col))
                rel, pv = "–", "–"
                if cell and base and cell.get("AUC") and base.get("AUC"):
                    value = relaimp_auc(np.mean(cell["AUC"]), np.mean(base["AUC"]))
                    rel = "n/a" if value is None else f"{value:+.2f}%"
                    if value is None:
                        relaimp_na.add((base_row, col))
                    if row != base_row:
                        p = _pvalue(targets, cell, base)
                        pv = f"{p:.3g}" if p is not None else "n<2"
                line += [rel, pv]
        body.append(line)
    if relaimp_na and notes is not None:
        notes.append(RELAIMP_NA["auc"] + f" ({', '.join(f'{b} on {c}' for b, c in sorted(relaimp_na))})")
    return header, body


def render(targets: dict, header, body, status: dict, smoke: bool, notes=()) -> tuple[str, str]:
    title = targets.get("title", targets["name"]) + (" — SMOKE (tiny fixtures, 1 epoch)" if smoke else "")
    md = [f"# {title}", ""]
    if targets.get("source"):
        md += [f"Paper numbers: {targets['source']}", ""]
    md += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    md += ["| " + " | ".join(line) + " |" for line in body]
    problems = sorted(status.items())
    if problems:
        md += ["", "Cells without results:", ""]
        md += [f"- {row} / {col}: {msg}" for (row, col), msg in problems]
    if notes:
        md += ["", "Records left out:", ""] + [f"- {n}" for n in notes]
    buf = io.StringIO()
    csv.writer(buf).writerows([header] + body)
    return "\n".join(md) + "\n", buf.getvalue()


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
    keys: dict = {}
    status = run_cells(cells, results_path, config_dir, data_root, gpu, console, keys=keys)
    notes: list = []
    collected = collect(targets, read_records(results_path), keys, notes)
    columns = list(dict.fromkeys(c.column for c in cells))
    rows = list(dict.fromkeys(c.row for c in cells))
    header, body = table_rows(targets, collected, status, columns, rows, notes)
    md, csv_text = render(targets, header, body, status, smoke, notes)
    md_path = os.path.join(out_dir, f"{targets['name']}{suffix}.md")
    with open(md_path, "w") as fd:
        fd.write(md)
    with open(os.path.join(out_dir, f"{targets['name']}{suffix}.csv"), "w") as fd:
        fd.write(csv_text)
    incomplete = [(c.row, c.column) for c in cells if (c.row, c.column) not in collected]
    return {
        "markdown": md,
        "path": md_path,
        "status": status,
        "incomplete": sorted(set(incomplete)),
        "cells": collected,
    }
