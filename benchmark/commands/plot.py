"""``ctrbench plot``: PNG learning curves and per-model metric bars from the run records
(``benchmark/plotting.py`` draws them)."""

from __future__ import annotations

import os
from typing import Optional

import typer

from ..errors import CTRBenchError
from ..util import split_list
from .common import ResultsOpt, default_results, out


def plot(
    results: Optional[str] = ResultsOpt,
    out_dir: str = typer.Option(os.path.join("results", "plots"), "--out", help="Folder for the PNGs."),
    metric: str = typer.Option("AUC", "--metric", help="Metric to plot (AUC, logloss, ...)."),
    split: str = typer.Option("test", "--split", help="Split of the per-model bars (test or valid)."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated dataset ids."),
    models_: Optional[str] = typer.Option(None, "--models", help="Comma-separated model names."),
):
    """PNG learning curves (validation metric per evaluation of each run) and per-model bars (mean ± std)."""
    from ..plotting import plot_learning_curves, plot_metric_bars
    from ..records import read_records

    path = results or default_results()
    if not os.path.isfile(path):
        raise CTRBenchError(f"no run records at {path}; run experiments first or pass --results")
    records = read_records(path)
    ds, ms = split_list(datasets), split_list(models_)
    written = plot_learning_curves(records, out_dir, metric, ds, ms)
    written.append(plot_metric_bars(records, out_dir, metric, split, ds, ms))
    for p in written:
        out.print(p, highlight=False)
