"""``ctrbench report``: the model x dataset table of the run records (``benchmark/report.py``)."""

from __future__ import annotations

import os
from typing import Optional

import typer

from ..errors import CTRBenchError
from ..util import split_list
from .common import ResultsOpt, console, default_results, out


def report(
    results: Optional[str] = ResultsOpt,
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Model for RelaImp."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated dataset ids."),
    models_: Optional[str] = typer.Option(None, "--models", help="Comma-separated model names."),
    fmt: str = typer.Option("md", "--format", help="md, csv or latex."),
    split: str = typer.Option("test", "--split", help="test or valid."),
    out_file: Optional[str] = typer.Option(None, "--out", help="Write the table to this file."),
    significance: str = typer.Option(
        "auto",
        "--significance",
        help="t-test against --baseline: auto (paired on the same seeds, "
        "else Welch), paired, welch, welch_levene, or none.",
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the * marker."),
    mark: bool = typer.Option(True, "--mark/--no-mark", help="Best in bold, second best underlined."),
    efficiency: bool = typer.Option(
        False, "--efficiency", help="Add s/epoch, samples/s, inference ms/100 and peak memory."
    ),
    latest: bool = typer.Option(
        False, "--latest", help="Keep only the newest config of each expid (says what it left out)."
    ),
    targets: Optional[str] = typer.Option(
        None,
        "--targets",
        help="A results/targets/*.yaml file: a verdict per cell against the paper's number "
        "(with --out, also written to <out>.verdicts.json).",
    ),
):
    """Model x dataset table of Logloss/AUC (mean ± std over seeds), #params, RelaImp and t-tests."""
    from ..records import read_records
    from ..report import build_table, render, write_table, write_verdicts
    from ..reproduce import load_targets

    path = results or default_results()
    if not os.path.isfile(path):
        raise CTRBenchError(
            f"no run records at {path}; run 'ctrbench run --expid ...' first or pass --results"
        )
    table = build_table(
        read_records(path),
        baseline,
        split_list(datasets),
        split_list(models_),
        split,
        significance=None if significance == "none" else significance,
        alpha=alpha,
        efficiency=efficiency,
        mark_best=mark,
        latest=latest,
        targets=load_targets(targets) if targets else None,
    )
    text = render(table, fmt)
    if out_file:
        write_table(out_file, text, path)  # refuses the records file (or any file of records)
        console.print(f"wrote {out_file}")
        written = write_verdicts(out_file, table)
        if written:
            console.print(f"wrote {written}")
    out.print(text, markup=False, highlight=False, soft_wrap=True)
