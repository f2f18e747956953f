"""``ctrbench sweep``: many runs (expid globs or a FuxiCTR tuner file) x seeds, resumable and parallel; the
machinery is ``benchmark/sweep/``."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import CTRBenchError
from ..util import split_list
from .common import (
    ConfigOpt,
    DataRootOpt,
    DebugOpt,
    SetOpt,
    console,
    default_config_dir,
    default_results,
    out,
    setup_logging,
)


def sweep(
    config: Optional[str] = ConfigOpt,
    expids: Optional[str] = typer.Option(
        None, "--expids", help="Comma-separated globs over expids, e.g. 'DCN_tiny,DNN_*'."
    ),
    tuner: Optional[str] = typer.Option(
        None, "--tuner", help="FuxiCTR tuner file (base_expid, tuner_space, ...)."
    ),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="N seeds (the configured seed, +1, ...) or a list 2021,2022."
    ),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", help="Runs at a time (default: one per GPU, else 1 = in this process)."
    ),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPUs to spread runs over, e.g. 0,1,2,3."),
    results: Optional[str] = typer.Option(
        None,
        "--results",
        help="Run records file (also the ledger of finished runs). Default: results/runs.jsonl",
    ),
    set_: Optional[List[str]] = SetOpt,
    data_root: Optional[str] = DataRootOpt,
    retries: int = typer.Option(1, "--retries", help="Retries of a failed run in this invocation."),
    isolate: bool = typer.Option(
        False, "--isolate", help="Run every run in its own process, even with --jobs 1."
    ),
    ray_address: Optional[str] = typer.Option(
        None,
        "--ray-address",
        help="Dispatch runs as Ray tasks "
        "to this cluster ('auto' = the running local one; 'local' "
        "starts one for this sweep).",
    ),
    ray_gpus: float = typer.Option(1.0, "--ray-gpus", help="GPUs per Ray task (0 for CPU clusters)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and whether they are done."),
    debug: bool = DebugOpt,
):
    """Run many experiments (expid globs or a FuxiCTR tuner file) x seeds; skips finished runs."""
    from .. import sweep as sweep_mod

    setup_logging(verbose=False)
    if bool(expids) == bool(tuner):
        raise CTRBenchError("sweep needs exactly one of --expids PATTERN or --tuner FILE")
    config_dir = config or default_config_dir()
    results_path = results or default_results()
    seed_spec = sweep_mod.parse_seeds(seeds)
    gpu_list = split_list(gpus, "--gpus", int)
    if gpu_list and not ray_address:  # Ray's GPUs are the cluster's, not this machine's
        from ..runner import check_gpus

        check_gpus(gpu_list)
    if tuner:
        generated, specs = sweep_mod.expand_tuner(tuner, seed_spec, set_, data_root, config_dir)
        console.print(f"tuner {tuner}: {len(specs)} runs; configs in {generated}", highlight=False)
    else:
        specs = sweep_mod.expand_expids(config_dir, expids, seed_spec, set_, data_root)
    specs = sweep_mod.resolve(specs)
    if dry_run:
        done = sweep_mod.finished_hashes(results_path)
        for spec in specs:
            status = "done" if spec.config_hash in done else "pending"
            out.print(
                f"{status:8s} {spec.label:40s} {spec.model:12s} {spec.dataset_id:20s} {spec.config_hash}",
                highlight=False,
            )
        return
    executor = sweep_mod.make_executor(
        results_path, jobs, gpu_list, ray_address, ray_gpus, isolate
    )  # Ray first
    pending = [s for s in specs if s.config_hash not in sweep_mod.finished_hashes(results_path)]
    sweep_mod.prebuild(pending)
    runner = sweep_mod.Sweep(specs, results_path, executor, retries, console)
    try:
        result = runner.run()
    except KeyboardInterrupt:
        console.print(
            "interrupted; rerun the same command to continue (finished runs are skipped, "
            "interrupted ones resume)",
            highlight=False,
        )
        raise typer.Exit(130)
    out.print(
        f"sweep: {len(result.ran)} ran, {len(result.skipped)} already done, {len(result.failed)} failed; "
        f"records in {results_path}",
        highlight=False,
    )
    for label, error in result.failed:
        out.print(f"failed {label}: {error}", highlight=False, soft_wrap=True)
    if result.failed:
        raise typer.Exit(1)
