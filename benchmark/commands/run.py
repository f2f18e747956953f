"""``ctrbench run``: one run of an expid (``benchmark/runner.py``), its test metrics printed."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from .common import (
    ConfigOpt,
    DataRootOpt,
    DebugOpt,
    GpuOpt,
    ResultsOpt,
    SetOpt,
    console,
    default_config_dir,
    default_results,
    out,
    setup_logging,
)


def run(
    expid: str = typer.Option(..., "--expid", "-e", help="Experiment id in model_config."),
    config: Optional[str] = ConfigOpt,
    gpu: Optional[int] = GpuOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (overrides the config)."),
    set_: Optional[List[str]] = SetOpt,
    data_root: Optional[str] = DataRootOpt,
    results: Optional[str] = ResultsOpt,
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run of the same config "
        "from its saved state (model, optimisers, counters, RNG, epoch position).",
    ),
    tensorboard: Optional[str] = typer.Option(
        None,
        "--tensorboard",
        help="Write TensorBoard event files under DIR (one folder per run); needs ctrbench\\[track].",
    ),
    mlflow: Optional[str] = typer.Option(
        None,
        "--mlflow",
        help="Log params, metrics and artifacts to this "
        "MLflow tracking URI (e.g. file:./mlruns); needs ctrbench\\[track].",
    ),
    restart: bool = typer.Option(
        False,
        "--restart",
        help="Start over: delete the saved state of an unfinished run of the same config.",
    ),
    progress_file: Optional[str] = typer.Option(
        None, "--progress-file", hidden=True, help="JSON progress file (what a sweep reads)."
    ),
    debug: bool = DebugOpt,
):
    """Build the data if needed, train EXPID, evaluate on valid/test and append a run record."""
    from ..config import load_config
    from ..runner import RunOptions
    from ..runner import run as run_one

    setup_logging()
    overrides = list(set_ or [])
    if gpu is not None:
        overrides.append(f"gpu={gpu}")
    if seed is not None:
        overrides.append(f"seed={seed}")
    params = load_config(config or default_config_dir(), expid, overrides, data_root)
    options = RunOptions(
        results=results or default_results(),
        resume=resume,
        restart=restart,
        console=console,
        tensorboard=tensorboard,
        mlflow=mlflow,
        progress_file=progress_file,
    )
    output = run_one(params, options)
    record = output.record
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 prints
        return
    out.print(
        f"{record['expid']} test: " + " ".join(f"{k}={v:.6f}" for k, v in (record["test"] or {}).items()),
        highlight=False,
    )
    paths = output.setup.paths
    out.print(
        f"record: {os.path.abspath(options.results)}\ncheckpoint: {paths.checkpoint}\nlog: {paths.log}",
        highlight=False,
        soft_wrap=True,
    )
