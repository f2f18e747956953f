"""``ctrbench reproduce TARGETS.yaml``: run a paper's table and write it beside the paper's numbers."""

from __future__ import annotations

import os
from typing import Optional

import typer

from ..util import split_list as _split
from .common import ConfigOpt, DataRootOpt, GpuOpt


def reproduce(
    targets: str = typer.Argument(..., help="A results/targets/<name>.yaml file."),
    smoke: bool = typer.Option(False, "--smoke", help="One epoch per cell on the tiny fixtures."),
    check: bool = typer.Option(
        False,
        "--check",
        help="No training: build every cell's model and "
        "take one step on one batch (with --smoke: on the tiny fixtures).",
    ),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Columns to run, e.g. frappe,movielens."),
    models: Optional[str] = typer.Option(None, "--models", help="Rows to run."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Seeds, e.g. 1,2,3."),
    gpu: Optional[int] = GpuOpt,
    config: Optional[str] = ConfigOpt,
    data_root: Optional[str] = DataRootOpt,
    out_dir: str = typer.Option("results", "--out-dir", help="Where tables and records go."),
):
    """Run every cell of a paper's table (resumable) and write <name>.md/.csv beside the paper's numbers."""
    from ..errors import CTRBenchError
    from ..reproduce import reproduce as run
    from .common import console, default_config_dir, out, setup_logging

    setup_logging(verbose=False)
    if not os.path.isfile(targets):
        raise CTRBenchError(f"targets file {targets} does not exist (see results/targets/)")
    if check:
        from ..reproduce import check as check_table

        n, errors = check_table(
            targets, config or default_config_dir(), _split(datasets), _split(models), smoke, data_root
        )
        for (row, column), message in errors.items():
            console.print(f"{row} / {column}: {message}", highlight=False, markup=False)
        if errors:
            raise CTRBenchError(f"{len(errors)} of {n} cells of {targets} fail the check (listed above)")
        out.print(f"{targets}: all {n} cells build and take a training step", highlight=False)
        return
    seed_list = _split(seeds, "--seeds", int)
    result = run(
        targets,
        out_dir,
        config or default_config_dir(),
        _split(datasets),
        _split(models),
        seed_list,
        smoke,
        gpu,
        data_root,
        console,
    )
    out.print(result["markdown"], markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {result['path']}, {result['csv']} and {result['verdicts_path']}", highlight=False)
    if smoke and result["incomplete"]:
        cells = ", ".join(f"{r}/{c}" for r, c in result["incomplete"])
        raise CTRBenchError(f"smoke table {targets} is incomplete: no result for {cells}")
