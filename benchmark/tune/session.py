"""One ``ctrbench tune`` invocation: check the settings, open the study, run its trials in this process,
in worker processes or on Ray, then write the results (and the seed runs of the tuned expid)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from rich.console import Console

from .. import sweep as sweep_mod
from ..errors import CTRBenchError
from .parallel import TuneRayExecutor, run_subprocess_workers
from .results import finish, run_seeds
from .space import load_space
from .study import PRUNERS, SAMPLERS, TuneConfig, counts, default_out_dir, open_study, storage_url
from .worker import Worker


@dataclass
class TuneOptions:
    """The options of ``ctrbench tune`` (paths absolute, defaults not yet filled in)."""

    space_file: str
    expid: str | None
    config_dir: str
    results: str
    sets: list[str] = field(default_factory=list)
    data_root: str | None = None
    trials: int | None = None
    sampler: str | None = None
    pruner: str = "median"
    storage: str | None = None
    study_name: str | None = None
    jobs: int | None = None
    gpus: str | None = None
    gpu: int = -1
    seeds: str | None = None
    out_dir: str | None = None
    ray_address: str | None = None
    ray_gpus: float = 1.0
    sampler_seed: int = 2023
    startup: int | None = None
    warmup: int = 0
    worker: bool = False


def run_tune(opts: TuneOptions, console: Console, out: Console) -> int:
    """Run the study of ``opts`` to its trial count; returns the exit code (130 when interrupted)."""
    space = load_space(opts.space_file, opts.expid, opts.config_dir, opts.sets, opts.data_root)
    sampler = opts.sampler or ("grid" if space.is_tuner_file else "tpe")
    if sampler not in SAMPLERS:
        raise CTRBenchError(f"--sampler {sampler}: use one of {', '.join(SAMPLERS)}")
    if opts.pruner not in PRUNERS:
        raise CTRBenchError(f"--pruner {opts.pruner}: use one of {', '.join(PRUNERS)}")
    trials = opts.trials
    grid = space.grid_size()
    if sampler == "grid":
        space.grid()  # ranges are an error here
        if trials is not None and trials > grid:
            console.print(f"the grid has {grid} points; running {grid} trials, not {trials}", highlight=False)
        trials = min(trials or grid, grid)
    trials = trials if trials is not None else 20
    if trials < 1:
        raise CTRBenchError(f"--trials {trials}: give at least 1")
    name = opts.study_name or f"{space.expid}-{space.fingerprint()[:6]}"
    base_out = os.path.abspath(opts.out_dir or default_out_dir(opts.results))
    cfg = TuneConfig(
        os.path.abspath(opts.space_file),
        opts.expid,
        opts.config_dir,
        opts.sets,
        opts.data_root,
        opts.results,
        storage_url(opts.storage, base_out, name),
        name,
        trials,
        sampler,
        opts.pruner,
        opts.sampler_seed,
        opts.gpu,
        opts.startup,
        opts.warmup,
    )
    if opts.worker:
        Worker(cfg, console, space).run()
        return 0
    gpu_list = [int(g) for g in opts.gpus.split(",") if g.strip()] if opts.gpus else None
    logging.getLogger().addHandler(logging.NullHandler())  # fuxictr's logging.info() must not basicConfig
    base_spec = sweep_mod.RunSpec(space.expid, space.config_dir, None, opts.sets, opts.data_root)
    sweep_mod.prebuild(list(space.tuner_specs.values()) or [base_spec])
    study = open_study(cfg, space)
    c = counts(study)
    console.print(
        f"study {name} ({cfg.storage}): {c['COMPLETE']} complete, {c['PRUNED']} pruned of {trials}; "
        f"sampler {sampler}, pruner {opts.pruner}",
        highlight=False,
        soft_wrap=True,
    )
    n_jobs = opts.jobs or (len(gpu_list) if gpu_list else 1)
    try:
        if opts.ray_address:
            executor = TuneRayExecutor(opts.ray_address, opts.jobs, opts.ray_gpus)
            executor.start_workers(cfg)
            executor.wait()
        elif n_jobs > 1 or len(gpu_list or []) > 1:
            run_subprocess_workers(
                cfg, n_jobs, gpu_list, os.path.join(base_out, name, "logs"), console, study
            )
        else:
            if gpu_list:
                cfg.gpu = gpu_list[0]
            Worker(cfg, console, space).run()
    except KeyboardInterrupt:
        console.print(
            "interrupted; rerun the same command to continue (finished trials are kept, the "
            "interrupted one resumes)",
            highlight=False,
        )
        return 130
    study_out = os.path.join(base_out, name)
    summary = finish(study, space, cfg, study_out, console, out)
    if opts.seeds:
        seeded = run_seeds(
            summary["tuned"]["config_dir"],
            summary["tuned"]["expid"],
            sweep_mod.parse_seeds(opts.seeds),
            opts.results,
            opts.jobs,
            gpu_list,
            console,
            opts.ray_address,
            opts.ray_gpus,
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
    return 0
