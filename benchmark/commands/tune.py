"""``ctrbench tune``: Optuna search over an expid's settings, each trial an ordinary run
(``benchmark/tune.py``)."""

from __future__ import annotations

import json
import logging
import os
from typing import List, Optional

import typer

from ..errors import CTRBenchError
from .common import (
    ConfigOpt,
    DataRootOpt,
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
    results: Optional[str] = typer.Option(
        None, "--results", help="Run records file. Default: results/runs.jsonl"
    ),
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
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
):
    """Search EXPID's settings with Optuna (TPE/random/grid, median/ASHA pruning), resumable; writes
    <expid>_tuned, the top trials and Optuna's plots."""
    from .. import sweep as sweep_mod
    from .. import tune as tune_mod
    from ..tracking import require

    require("optuna", "ctrbench tune")
    setup_logging(verbose=False)
    config_dir = os.path.abspath(config or default_config_dir())
    results_path = os.path.abspath(results or default_results())
    sets = list(set_ or [])
    space = tune_mod.load_space(space_file, expid, config_dir, sets, data_root)
    sampler = sampler or ("grid" if space.is_tuner_file else "tpe")
    if sampler not in tune_mod.SAMPLERS:
        raise CTRBenchError(f"--sampler {sampler}: use one of {', '.join(tune_mod.SAMPLERS)}")
    if pruner not in tune_mod.PRUNERS:
        raise CTRBenchError(f"--pruner {pruner}: use one of {', '.join(tune_mod.PRUNERS)}")
    grid = space.grid_size()
    if sampler == "grid":
        space.grid()  # ranges are an error here
        if trials is not None and trials > grid:
            console.print(f"the grid has {grid} points; running {grid} trials, not {trials}", highlight=False)
        trials = min(trials or grid, grid)
    trials = trials if trials is not None else 20
    if trials < 1:
        raise CTRBenchError(f"--trials {trials}: give at least 1")
    name = study_name or f"{space.expid}-{space.fingerprint()[:6]}"
    base_out = os.path.abspath(out_dir or tune_mod.default_out_dir(results_path))
    cfg = tune_mod.TuneConfig(
        os.path.abspath(space_file),
        expid,
        config_dir,
        sets,
        data_root,
        results_path,
        tune_mod.storage_url(storage, base_out, name),
        name,
        trials,
        sampler,
        pruner,
        sampler_seed,
        gpu,
        startup,
        warmup,
    )
    if worker:
        tune_mod.Worker(cfg, console, space).run()
        return
    gpu_list = [int(g) for g in gpus.split(",") if g.strip()] if gpus else None
    logging.getLogger().addHandler(logging.NullHandler())  # fuxictr's logging.info() must not basicConfig
    base_spec = sweep_mod.RunSpec(space.expid, space.config_dir, None, sets, data_root)
    sweep_mod.prebuild(list(space.tuner_specs.values()) or [base_spec])
    study = tune_mod.open_study(cfg, space)
    c = tune_mod.counts(study)
    console.print(
        f"study {name} ({cfg.storage}): {c['COMPLETE']} complete, {c['PRUNED']} pruned of {trials}; "
        f"sampler {sampler}, pruner {pruner}",
        highlight=False,
        soft_wrap=True,
    )
    n_jobs = jobs or (len(gpu_list) if gpu_list else 1)
    try:
        if ray_address:
            executor = tune_mod.TuneRayExecutor(ray_address, jobs, ray_gpus)
            executor.start_workers(cfg)
            executor.wait()
        elif n_jobs > 1 or len(gpu_list or []) > 1:
            tune_mod.run_subprocess_workers(
                cfg, n_jobs, gpu_list, os.path.join(base_out, name, "logs"), console, study
            )
        else:
            if gpu_list:
                cfg.gpu = gpu_list[0]
            tune_mod.Worker(cfg, console, space).run()
    except KeyboardInterrupt:
        console.print(
            "interrupted; rerun the same command to continue (finished trials are kept, the "
            "interrupted one resumes)",
            highlight=False,
        )
        raise typer.Exit(130)
    study_out = os.path.join(base_out, name)
    summary = tune_mod.finish(study, space, cfg, study_out, console, out)
    if seeds:
        seeded = tune_mod.run_seeds(
            summary["tuned"]["config_dir"],
            summary["tuned"]["expid"],
            sweep_mod.parse_seeds(seeds),
            results_path,
            jobs,
            gpu_list,
            console,
            ray_address,
            ray_gpus,
        )
        summary["seeds"] = seeded
        with open(os.path.join(study_out, "summary.json"), "w") as fd:
            json.dump(summary, fd, indent=2, default=str)
        out.print(
            f"{seeded['expid']} over seeds {seeded['seeds']}: test "
            + ", ".join(f"{k} {v['mean']:.6f} ± {v['std']:.6f}" for k, v in seeded["test"].items()),
            highlight=False,
            soft_wrap=True,
        )
