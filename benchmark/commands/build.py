"""``ctrbench data build``, ``data verify-build`` and ``data synth``: making the data a run reads (the
published datasets' commands, list/verify/prepare, are in ``datasets.py``)."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from ..errors import CTRBenchError
from .common import ConfigOpt, DataRootOpt, SetOpt, default_config_dir, out, setup_logging


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
    from ..data.build import build

    params = _dataset_params(dataset_id, config, data_root, build_root, set_)
    if jobs is not None:
        if jobs < 0:
            raise CTRBenchError(f"--jobs {jobs}: give the number of files built at once (0: the cores)")
        params["build_jobs"] = jobs
    directory = build(params, force=force)
    out.print(directory, highlight=False)


def data_verify_build(
    dataset_id: str = typer.Argument(..., help="dataset_id in dataset_config."),
    config: Optional[str] = ConfigOpt,
    data_root: Optional[str] = DataRootOpt,
    build_root: Optional[str] = typer.Option(None, "--build-root", help="Where built data is."),
    set_: Optional[List[str]] = SetOpt,
):
    """Check every file of DATASET_ID's build against the sizes and checksums recorded when it was built."""
    from ..data.build import verify_build

    target, problems = verify_build(_dataset_params(dataset_id, config, data_root, build_root, set_))
    if problems:
        raise CTRBenchError(
            f"the build in {target} is damaged: {'; '.join(problems)}; rebuild it with "
            f"'ctrbench data build {dataset_id} --force'"
        )
    out.print(f"{target}: every file matches its recorded size and checksum", highlight=False)


def _dataset_params(dataset_id, config, data_root, build_root, set_) -> dict:
    from ..config import apply_overrides, load_dataset_config, parse_set
    from ..keys import check_keys

    setup_logging()
    params = load_dataset_config(os.path.abspath(config or default_config_dir()), dataset_id, data_root)
    overrides = parse_set(set_)
    check_keys(apply_overrides({}, overrides), where=lambda key: f"--set {key}")
    apply_overrides(params, overrides)
    if build_root:
        params["build_root"] = os.path.abspath(build_root)
    return params


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

    from ..data.synth import dataset_config, write_splits

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
