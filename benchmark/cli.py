"""The ``ctrbench`` command line (Typer).

Every command is a plain function: the core ones (run, models, expids, report, data synth/build) here, the
others in ``benchmark/commands/`` (one module per group, sharing ``commands/common.py``). All of them are
registered in this file: the decorators below and the list at its end. Every user error is a
``CTRBenchError``: printed as one ``error: ...`` line, exit code 2, no traceback unless ``--debug``.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .commands import analyze as analyze_cmds
from .commands import bench_infer as bench_infer_cmds
from .commands import datasets as dataset_cmds
from .commands import experiments as experiment_cmds
from .commands import reproduce as reproduce_cmds
from .commands import tune as tune_cmds
from .commands.common import (  # noqa: F401
    REPO,
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
from .errors import USER_ERRORS, CTRBenchError
from .util import split_list

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="ctrbench: run, compare and reproduce CTR prediction models (built on FuxiCTR).",
)
data_app = typer.Typer(no_args_is_help=True, help="Build, generate and check datasets.")
app.add_typer(data_app, name="data")


@app.command()
def run(
    expid: str = typer.Option(..., "--expid", "-e", help="Experiment id in model_config."),
    config: Optional[str] = ConfigOpt,
    gpu: Optional[int] = typer.Option(None, "--gpu", help="CUDA device index; -1 for CPU."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (overrides the config)."),
    set_: Optional[List[str]] = SetOpt,
    data_root: Optional[str] = DataRootOpt,
    results: str = typer.Option(None, "--results", help="Run records file. Default: results/runs.jsonl"),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run of the same config "
        "from its saved state (model, optimisers, counters, RNG, epoch position).",
    ),
    tensorboard: Optional[str] = typer.Option(
        None,
        "--tensorboard",
        help="Write TensorBoard event files under DIR (one folder per run); needs ctrbench[track].",
    ),
    mlflow: Optional[str] = typer.Option(
        None,
        "--mlflow",
        help="Log params, metrics and artifacts to this "
        "MLflow tracking URI (e.g. file:./mlruns); needs ctrbench[track].",
    ),
    debug: bool = DebugOpt,
):
    """Build the data if needed, train EXPID, evaluate on valid/test and append a run record."""
    from .config import load_config
    from .runner import run_experiment

    setup_logging()
    overrides = list(set_ or [])
    if gpu is not None:
        overrides.append(f"gpu={gpu}")
    if seed is not None:
        overrides.append(f"seed={seed}")
    params = load_config(config or default_config_dir(), expid, overrides, data_root)
    if tensorboard:
        params["_tensorboard"] = tensorboard  # private keys: the config hash and record stay the same
    if mlflow:
        params["_mlflow"] = mlflow
    record = run_experiment(params, results or default_results(), console, resume=resume)
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 prints
        return
    out.print(
        f"{record['expid']} test: " + " ".join(f"{k}={v:.6f}" for k, v in (record["test"] or {}).items()),
        highlight=False,
    )


@app.command()
def models():
    """List the registered models with a one-line description."""
    import model_zoo

    table = Table(title="ctrbench models")
    table.add_column("model")
    table.add_column("description")
    for name, cls in model_zoo.registry().items():
        table.add_row(name, model_zoo.describe(cls))
    out.print(table)


@app.command()
def expids(
    config: Optional[str] = ConfigOpt,
    pattern: str = typer.Argument("*", help="Glob on expids, e.g. '*_tiny'."),
):
    """List the experiment ids of a config directory."""
    import fnmatch

    from .config import list_expids

    for expid in list_expids(config or default_config_dir()):
        if fnmatch.fnmatch(expid, pattern):
            out.print(expid, highlight=False)


@app.command()
def report(
    results: str = typer.Option(None, "--results", help="Run records file."),
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
):
    """Model x dataset table of Logloss/AUC (mean ± std over seeds), #params, RelaImp and t-tests."""
    from .records import read_records
    from .report import build_table, render, write_table

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
    )
    text = render(table, fmt)
    if out_file:
        write_table(out_file, text, path)  # refuses the records file (or any file of records)
        console.print(f"wrote {out_file}")
    out.print(text, markup=False, highlight=False, soft_wrap=True)


@data_app.command("build")
def data_build(
    dataset_id: str = typer.Argument(..., help="dataset_id in dataset_config."),
    config: Optional[str] = ConfigOpt,
    data_root: Optional[str] = DataRootOpt,
    build_root: Optional[str] = typer.Option(None, "--build-root", help="Where built data goes."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if unchanged."),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", help="Files of a multi-file split built at once (default: the cores)."
    ),
    set_: Optional[List[str]] = SetOpt,
):
    """Fit the feature map and write h5 blocks for DATASET_ID (reused when unchanged)."""
    from .data.build import build

    params = _dataset_params(dataset_id, config, data_root, build_root, set_)
    if jobs is not None:
        params["build_jobs"] = jobs
    directory = build(params, force=force)
    out.print(directory, highlight=False)


@data_app.command("verify-build")
def data_verify_build(
    dataset_id: str = typer.Argument(..., help="dataset_id in dataset_config."),
    config: Optional[str] = ConfigOpt,
    data_root: Optional[str] = DataRootOpt,
    build_root: Optional[str] = typer.Option(None, "--build-root", help="Where built data is."),
    set_: Optional[List[str]] = SetOpt,
):
    """Check every file of DATASET_ID's build against the sizes and checksums recorded when it was built."""
    from .data.build import verify_build

    target, problems = verify_build(_dataset_params(dataset_id, config, data_root, build_root, set_))
    if problems:
        raise CTRBenchError(
            f"the build in {target} is damaged: {'; '.join(problems)}; rebuild it with "
            f"'ctrbench data build {dataset_id} --force'"
        )
    out.print(f"{target}: every file matches its recorded size and checksum", highlight=False)


def _dataset_params(dataset_id, config, data_root, build_root, set_) -> dict:
    from .config import apply_overrides, load_dataset_config, parse_set

    setup_logging()
    params = load_dataset_config(os.path.abspath(config or default_config_dir()), dataset_id, data_root)
    apply_overrides(params, parse_set(set_))
    if build_root:
        params["build_root"] = os.path.abspath(build_root)
    return params


@data_app.command("synth")
def data_synth(
    out_dir: str = typer.Option("data/raw/synth_criteo", "--out", help="Output folder."),
    rows: int = typer.Option(200_000, "--rows", help="Total rows (split 8:1:1)."),
    n_numeric: int = typer.Option(13, "--numeric"),
    n_categorical: int = typer.Option(26, "--categorical"),
    max_cardinality: int = typer.Option(20_000, "--max-cardinality"),
    sequence: bool = typer.Option(False, "--sequence/--no-sequence"),
    seed: int = typer.Option(2023, "--seed"),
    dataset_id: str = typer.Option("synth_criteo", "--dataset-id"),
):
    """Write a deterministic synthetic Criteo-like dataset and its dataset config."""
    import yaml

    from .data.synth import dataset_config, write_splits

    cfg = {
        "rows": rows,
        "n_numeric": n_numeric,
        "n_categorical": n_categorical,
        "max_cardinality": max_cardinality,
        "sequence": sequence,
        "seed": seed,
    }
    paths = write_splits(out_dir, cfg)
    section = dataset_config(dataset_id, cfg, os.path.abspath(out_dir))
    cfg_path = os.path.join(out_dir, "dataset_config.yaml")
    with open(cfg_path, "w") as fd:
        yaml.safe_dump({dataset_id: section}, fd, sort_keys=False)
    for split, path in paths.items():
        out.print(f"{split}: {path}", highlight=False)
    out.print(f"dataset config: {cfg_path}", highlight=False)


# ---- the commands of benchmark/commands/ -------------------------------------------------------------
app.command("sweep")(experiment_cmds.sweep)
app.command("plot")(experiment_cmds.plot)
app.command("reproduce")(reproduce_cmds.reproduce)
app.command("analyze")(analyze_cmds.analyze)
app.command("bench-infer")(bench_infer_cmds.bench_infer_cmd)
app.command("tune")(tune_cmds.tune)
data_app.command("list")(dataset_cmds.data_list)
data_app.command("verify")(dataset_cmds.data_verify)
data_app.command("prepare")(dataset_cmds.data_prepare)


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        app()
    except USER_ERRORS as exc:
        if debug:
            raise
        # escaped: a message such as "pip install 'ctrbench[tune]'" is text, not rich markup
        console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
