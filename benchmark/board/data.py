"""The board's numbers: tables of config groups with intervals, tests, marks, RelaImp and paper values.

Nothing here renders; :mod:`benchmark.board.site` turns these structures into pages.

- A **row** is one config group of ``records.group_records`` (dataset, expid, config without the seed);
  its records are one per seed.
- A **metric cell** holds the mean and the 95% confidence interval over seeds (``stats.mean_ci``).
- **Baseline tests**: each row against the baseline row of its table, paired by seed (``stats.paired_ttest``)
  when both ran the same seeds, else Welch's (``stats.welch_ttest``); the p-values of one table (every
  row and metric) are one Holm family (``stats.holm``).
- **Best marks**: per metric the row with the best mean is ``best``; every other row is tested against it
  the same way (one Holm family per table) and is ``tied`` (not significantly different from the best)
  when its adjusted p-value is at least ``alpha``. A row with one seed cannot be tested and gets no mark.
- **RelaImp** against the baseline: ``report.relaimp_auc`` for AUC-like metrics, ``report.relaimp_loss``
  for logloss.
- **Paper tables** (targets files): one table per paper table and column, its rows the groups whose
  records carry that table's name and column (``reproduce`` writes them); each cell gains the paper's number,
  the difference (in the units shown: AUC in %) and the verdict ``reproduce`` wrote, when present.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from .. import stats
from ..metrics import LOGLOSS
from ..records import group_records
from ..report import RELAIMP_NA, relaimp_auc, relaimp_loss

EFFICIENCY = (
    ("params", "#params"),
    ("seconds_per_epoch", "s/epoch"),
    ("samples_per_second", "samples/s"),
    ("device", "device"),
    ("peak_memory_mb", "peak MB"),
)


def lower_is_better(metric: str) -> bool:
    return metric in LOGLOSS


def is_auc(metric: str) -> bool:
    return metric.lower().endswith("auc")


def slug(text: str) -> str:
    """A name usable as an HTML id and a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def _finite(value) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class MetricCell:
    metric: str
    values: dict  # seed -> value
    mean: float
    lo: float | None = None
    hi: float | None = None
    p: float | None = None  # against the baseline, raw
    p_adj: float | None = None  # Holm-adjusted over the table
    test: str | None = None  # paired | welch
    significant: bool = False
    best_p_adj: float | None = None  # against the best row, Holm-adjusted
    mark: str | None = None  # best | tied
    relaimp: float | None = None
    relaimp_na: bool = False  # RelaImp is not defined against this baseline (report.RELAIMP_NA)
    paper: float | None = None
    diff: float | None = None
    verdict: str | None = None

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass
class Row:
    id: str
    label: str
    name: str  # the report name (a targets row, else the model class)
    model: str
    expid: str
    dataset_id: str
    config_key: str
    seeds: list
    records: list
    cells: dict  # metric -> MetricCell
    efficiency: dict
    differing: dict = field(default_factory=dict)
    dropped: list = field(default_factory=list)  # why records of this config are not seeds of it
    is_baseline: bool = False
    paper_row: str | None = None


@dataclass
class Table:
    id: str
    title: str
    kind: str  # dataset | paper
    dataset_id: str
    metrics: list
    rows: list
    baseline: str | None = None  # the baseline row's label
    baseline_missing: str | None = None  # the --baseline asked for, when no row of this table is it
    paper: str | None = None  # the targets file's table name
    column: str | None = None
    notes: list = field(default_factory=list)
    source: str | None = None
    long_title: str | None = None  # a paper table's own title


def group_id(group) -> str:
    return slug(f"{group.dataset_id}-{group.expid}-{group.config_key}")


def _efficiency(records: list) -> dict:
    out = {}
    for key, _ in EFFICIENCY:
        values = [r.get(key) for r in records if r.get(key) is not None]
        if not values:
            continue
        if key == "device":
            out[key] = ", ".join(sorted({str(v) for v in values}))
        elif key == "params":
            out[key] = Counter(values).most_common(1)[0][0]
        else:
            numbers = [v for v in map(_finite, values) if v is not None]
            if numbers:
                out[key] = sum(numbers) / len(numbers)
    return out


def make_row(group, split: str = "test", level: float = 0.95) -> Row:
    cells = {}
    for record, seed in zip(group.records, group.seeds):
        for metric, value in (record.get(split) or {}).items():
            value = _finite(value)
            if value is not None:
                cells.setdefault(metric, {})[seed] = value
    metric_cells = {}
    for metric, values in cells.items():
        mean, lo, hi = stats.mean_ci(list(values.values()), level)
        metric_cells[metric] = MetricCell(metric, values, float(mean), _finite(lo), _finite(hi))
    first = group.records[0]
    return Row(
        id=group_id(group),
        label=group.label,
        name=group.name,
        model=group.model,
        expid=group.expid,
        dataset_id=group.dataset_id,
        config_key=group.config_key,
        seeds=list(group.seeds),
        records=list(group.records),
        cells=metric_cells,
        efficiency=_efficiency(group.records),
        differing=dict(group.differing),
        dropped=list(group.dropped),
        paper_row=group.name if (first.get("config") or {}).get("table_name") else None,
    )


def compare(a: MetricCell, b: MetricCell) -> tuple[float | None, str | None]:
    """p-value of a against b over seeds: paired by seed when both ran the same seeds, else Welch's;
    None when either side has fewer than two values."""
    if set(a.values) == set(b.values) and len(a.values) >= 2:
        seeds = list(a.values)
        p = stats.paired_ttest([a.values[s] for s in seeds], [b.values[s] for s in seeds])
        return _finite(p), "paired"
    if len(a.values) >= 2 and len(b.values) >= 2:
        return _finite(stats.welch_ttest(list(a.values.values()), list(b.values.values()))), "welch"
    return None, None


def _holm(entries: list, setter) -> None:
    """Holm-adjust the p-values of ``entries`` [(cell, p)] as one family; ``setter(cell, p_adj)``."""
    tested = [(cell, p) for cell, p in entries if p is not None]
    if not tested:
        return
    for (cell, _), p_adj in zip(tested, stats.holm([p for _, p in tested])):
        setter(cell, float(p_adj))


def pick_baseline(rows: list, baseline: str | None) -> Row | None:
    """The row named ``baseline`` (its label first, else its model); of several, the one with the most
    seeds, then the first."""
    if not baseline:
        return None
    for key in ("label", "name", "model", "expid"):
        matches = [r for r in rows if getattr(r, key) == baseline]
        if matches:
            return max(matches, key=lambda r: len(r.seeds))
    return None


def finish_table(table: Table, baseline: str | None, alpha: float = 0.05) -> Table:
    """Baseline tests and RelaImp, Holm over the table, best / tied marks."""
    base = pick_baseline(table.rows, baseline)
    if baseline and base is None:
        table.baseline_missing = baseline
    family = []
    if base is not None:
        base.is_baseline = True
        table.baseline = base.label
        for row in table.rows:
            for metric, cell in row.cells.items():
                ref = base.cells.get(metric)
                if ref is None:
                    continue
                kind = "auc" if is_auc(metric) else ("loss" if lower_is_better(metric) else None)
                if kind:
                    cell.relaimp = (relaimp_auc if kind == "auc" else relaimp_loss)(cell.mean, ref.mean)
                    cell.relaimp_na = cell.relaimp is None
                    if cell.relaimp_na and RELAIMP_NA[kind] not in table.notes:
                        table.notes.append(RELAIMP_NA[kind])
                if row is base:
                    continue
                cell.p, cell.test = compare(cell, ref)
                family.append((cell, cell.p))
    _holm(family, lambda cell, p: setattr(cell, "p_adj", p))
    for cell, _ in family:
        cell.significant = cell.p_adj is not None and cell.p_adj < alpha

    ties = []
    for metric in table.metrics:
        present = [r for r in table.rows if metric in r.cells]
        if not present:
            continue
        pick = min if lower_is_better(metric) else max
        best = pick(present, key=lambda r: r.cells[metric].mean)
        best.cells[metric].mark = "best"
        for row in present:
            if row is not best:
                p, _ = compare(row.cells[metric], best.cells[metric])
                ties.append((row.cells[metric], p))
    _holm(ties, lambda cell, p: setattr(cell, "best_p_adj", p))
    for cell, _ in ties:
        if cell.best_p_adj is not None and cell.best_p_adj >= alpha:
            cell.mark = "tied"
    return table


def _metric_order(rows: list) -> list:
    seen = {}
    for row in rows:
        for metric in row.cells:
            seen.setdefault(metric, None)
    return list(seen)


def dataset_tables(
    records: list, baseline: str | None = None, split: str = "test", alpha: float = 0.05
) -> list[Table]:
    """One table per dataset, a row per config group."""
    groups = group_records(records, split=split)
    rows = [make_row(g, split) for g in groups]
    tables = []
    for dataset in dict.fromkeys(r.dataset_id for r in rows):
        mine = [r for r in rows if r.dataset_id == dataset]
        table = Table(
            id=f"dataset-{slug(dataset)}",
            title=f"{dataset}",
            kind="dataset",
            dataset_id=dataset,
            metrics=_metric_order(mine),
            rows=mine,
            notes=_notes(groups, split, lambda dataset_id: dataset_id == dataset),
        )
        tables.append(finish_table(table, baseline, alpha))
    return tables


def _notes(groups, split: str, keep) -> list[str]:
    """The grouping's footnotes (records without metrics, re-recorded seeds) of the datasets ``keep``
    accepts."""
    notes = [f"{g.label}: {d}" for g in groups if keep(g.dataset_id) for d in g.dropped]
    notes += [
        f"{r.get('expid') or r.get('model')} seed {r.get('seed')} ({r.get('run_id') or r.get('time')}): "
        f"no {split} metrics, not counted"
        for r in groups.incomplete
        if keep(r.get("dataset_id"))
    ]
    return notes


def _table_key(record: dict) -> tuple:
    cfg = record.get("config") or {}
    return cfg.get("table_name"), cfg.get("table_column")


def _paper_value(metric: str, value) -> float | None:
    value = _finite(value)
    if value is not None and is_auc(metric) and value <= 1.0:
        value *= 100.0
    return value


def paper_tables(
    targets: dict,
    records: list,
    verdicts: dict | None = None,
    baseline: str | None = None,
    split: str = "test",
    alpha: float = 0.05,
) -> list[Table]:
    """One table per column of a targets file (``reproduce.load_targets``): rows in the file's order,
    our numbers beside the paper's. ``verdicts`` maps (table, row, column, metric) to a verdict text."""
    name = targets["name"]
    mine = [r for r in records if _table_key(r)[0] == name]
    groups = group_records(mine, split=split)
    rows = [make_row(g, split) for g in groups]
    order = {row: i for i, row in enumerate(targets["rows"])}
    base_spec = targets.get("baseline")
    tables = []
    for column in targets["datasets"]:
        col_rows = [r for r in rows if _table_key(r.records[0])[1] == column]
        if not col_rows:
            continue
        col_rows.sort(key=lambda r: order.get(r.paper_row, len(order)))
        for row in col_rows:
            paper = ((targets.get("paper") or {}).get(row.paper_row) or {}).get(column) or {}
            for metric, cell in row.cells.items():
                ref = _paper_value(metric, paper.get(metric))
                if ref is not None:
                    cell.paper = ref
                    ours = cell.mean * 100.0 if is_auc(metric) and cell.mean <= 1.0 else cell.mean
                    cell.diff = ours - ref
                if verdicts:
                    cell.verdict = verdicts.get((name, row.paper_row, column, metric))
        metrics = [m for m in targets.get("metrics", []) if any(m in r.cells for r in col_rows)]
        metrics += [m for m in _metric_order(col_rows) if m not in metrics]
        table = Table(
            id=f"paper-{slug(name)}-{slug(column)}",
            title=f"{name} — {column}",
            long_title=targets.get("title"),
            kind="paper",
            dataset_id=", ".join(dict.fromkeys(r.dataset_id for r in col_rows)),
            metrics=metrics,
            rows=col_rows,
            paper=name,
            column=column,
            source=targets.get("source"),
            notes=_notes(groups, split, lambda dataset_id: any(r.dataset_id == dataset_id for r in col_rows)),
        )
        col_base = base_spec.get(column) if isinstance(base_spec, dict) else base_spec
        tables.append(finish_table(table, col_base or baseline, alpha))
    return tables
