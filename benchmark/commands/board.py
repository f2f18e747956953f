"""``ctrbench board``: the results site (``benchmark/board/``) from records, targets files and studies."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from .common import ConfigOpt, DebugOpt, console, default_config_dir, default_results, setup_logging


def board(
    results: Optional[List[str]] = typer.Option(
        None, "--results", help="Run records file (repeatable). Default: results/runs.jsonl"
    ),
    targets: Optional[List[str]] = typer.Option(
        None,
        "--targets",
        help="Targets file of a paper table (repeatable): a table per column beside the paper's numbers, "
        "from the records 'reproduce' wrote.",
    ),
    verdicts: Optional[List[str]] = typer.Option(
        None,
        "--verdicts",
        help="Verdicts file of 'reproduce' (repeatable). Default: <table>.verdicts.json beside each "
        "<table>_runs.jsonl given.",
    ),
    tune_storage: Optional[List[str]] = typer.Option(
        None,
        "--tune-storage",
        help="Study database of 'ctrbench tune' (a SQLite file or SQLAlchemy URL; repeatable). "
        "tune/*.db beside each records file are read too.",
    ),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Model (or row label) for RelaImp and the tests; a targets file's own wins."
    ),
    out_dir: str = typer.Option(
        os.path.join("results", "board"), "--out", help="Folder to write the site to."
    ),
    split: str = typer.Option("test", "--split", help="Split whose metrics fill the tables (test or valid)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the tests (Holm-adjusted)."),
    config: Optional[str] = ConfigOpt,
    debug: bool = DebugOpt,
):
    """Write a static results site (opens from disk): tables with 95% intervals, Holm-corrected tests and
    RelaImp per dataset and paper table, learning curves and configs per config, tuning studies."""
    from ..board import build
    from ..errors import CTRBenchError

    setup_logging(verbose=False)
    if not 0 < alpha < 1:
        raise CTRBenchError(f"--alpha {alpha}: give a level between 0 and 1, e.g. 0.05")
    written = build(
        results or [default_results()],
        out_dir,
        targets or [],
        verdicts or [],
        tune_storage or [],
        baseline,
        config or default_config_dir(),
        split,
        alpha,
    )
    console.print(
        f"Board: {written['tables']} table(s), {written['pages']} config page(s), "
        f"{written['studies']} tuning study(ies) -> {written['index']}",
        highlight=False,
    )
