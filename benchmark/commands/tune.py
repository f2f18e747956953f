"""``ctrbench tune``: the options; the search itself is ``benchmark/tune/`` (``tune.session.run_tune``)."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from .common import (
    ConfigOpt,
    DataRootOpt,
    DebugOpt,
    ResultsOpt,
    SetOpt,
    console,
    default_config_dir,
    default_results,
    out,
    setup_logging,
)


def tune(
    expid: Optional[str] = typer.Option(
        None, "--expid", "-e", help="Expid to tune (a tuner file names its own base_expid)."
    ),
    space_file: str = typer.Option(
        ...,
        "--space",
        help="Search space YAML (choices, {low, high, log}, {int: [lo, hi]}) or a FuxiCTR tuner file.",
    ),
    trials: Optional[int] = typer.Option(
        None,
        "--trials",
        "-n",
        help="Total finished (complete + pruned) "
        "trials of the study. Default: the grid size with "
        "--sampler grid, else 20.",
    ),
    sampler: Optional[str] = typer.Option(
        None, "--sampler", help="tpe, random or grid (default: grid for a tuner file, else tpe)."
    ),
    pruner: str = typer.Option(
        "median", "--pruner", help="median, asha (asynchronous successive halving) or none."
    ),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="SQLAlchemy URL of the study database. Default: sqlite:///<out>/<study>.db"
    ),
    study_name: Optional[str] = typer.Option(
        None, "--study", help="Study name (default: <expid>-<md5 of the space and --set>)."
    ),
    jobs: Optional[int] = typer.Option(
        None,
        "--jobs",
        "-j",
        help="Trials at a time in worker processes (default: one per --gpus, else 1 = in this process).",
    ),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPUs to spread workers over, e.g. 0,1."),
    gpu: int = typer.Option(-1, "--gpu", help="CUDA device of the in-process trials; -1 for CPU."),
    seeds: Optional[str] = typer.Option(
        None,
        "--seeds",
        help="Afterwards run the tuned expid with N seeds (the configured seed, +1, ...) or a list 1,2,3.",
    ),
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    data_root: Optional[str] = DataRootOpt,
    results: Optional[str] = ResultsOpt,
    out_dir: Optional[str] = typer.Option(
        None,
        "--out",
        help="Folder of the study database and outputs. Default: tune/ next to the records file.",
    ),
    ray_address: Optional[str] = typer.Option(
        None,
        "--ray-address",
        help="Run the workers as Ray tasks on this cluster (the storage must be reachable from it).",
    ),
    ray_gpus: float = typer.Option(1.0, "--ray-gpus", help="GPUs per Ray worker (0 for CPU clusters)."),
    sampler_seed: int = typer.Option(2023, "--sampler-seed", help="Seed of the sampler."),
    startup: Optional[int] = typer.Option(
        None,
        "--startup-trials",
        help="Trials the pruner lets finish before it prunes (default: min(5, max(1, trials // 4))).",
    ),
    warmup: int = typer.Option(0, "--warmup", help="Evaluations of a trial before it can be pruned."),
    worker: bool = typer.Option(False, "--worker", hidden=True, help="Run trials only (no results)."),
    debug: bool = DebugOpt,
):
    """Search EXPID's settings with Optuna (TPE/random/grid, median/ASHA pruning), resumable; writes
    <expid>_tuned, the top trials and Optuna's plots."""
    from ..tracking import require

    require("optuna", "ctrbench tune")
    setup_logging(verbose=False)
    from ..tune import TuneOptions, run_tune

    opts = TuneOptions(
        space_file=space_file,
        expid=expid,
        config_dir=os.path.abspath(config or default_config_dir()),
        results=os.path.abspath(results or default_results()),
        sets=list(set_ or []),
        data_root=data_root,
        trials=trials,
        sampler=sampler,
        pruner=pruner,
        storage=storage,
        study_name=study_name,
        jobs=jobs,
        gpus=gpus,
        gpu=gpu,
        seeds=seeds,
        out_dir=out_dir,
        ray_address=ray_address,
        ray_gpus=ray_gpus,
        sampler_seed=sampler_seed,
        startup=startup,
        warmup=warmup,
        worker=worker,
    )
    code = run_tune(opts, console, out)
    if code:
        raise typer.Exit(code)
