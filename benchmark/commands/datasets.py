"""``ctrbench data list | verify | prepare``: what each dataset's files are, whether a download is
intact, and how to build a split from the raw sources. Facts come from ``benchmark/data/registry.py``,
file locations from the dataset configs (so ``--data-root`` and edited paths are respected)."""

from __future__ import annotations

import os
from typing import Optional

import typer
from rich.table import Table

from ..data import downloads as verify_mod
from ..data import prepare as prep
from ..data import registry
from ..errors import CTRBenchError
from .common import ConfigOpt, DataRootOpt, console, default_config_dir, out, setup_logging


def _dataset_paths(config_dir: str, dataset_id: str, data_root: str | None) -> tuple[dict, dict[str, str]]:
    from ..config import load_dataset_config

    params = load_dataset_config(config_dir, dataset_id, data_root)
    return params, {split: params.get(f"{split}_data") for split in ("train", "valid", "test")}


def _config_ids(config_dir: str) -> list[str]:
    from ..config import load_sections

    return list(load_sections(config_dir, "dataset_config"))


_STATUS_STYLE = {
    "ok": "green",
    "present": "yellow",
    "missing": "dim",
    "mismatch": "bold red",
    "bad-header": "bold red",
}


def data_list(
    config: Optional[str] = ConfigOpt,
    data_root: Optional[str] = DataRootOpt,
    all_: bool = typer.Option(False, "--all", help="Also list synthetic and other config ids."),
    details: bool = typer.Option(False, "--details", help="Show each id's processing."),
):
    """Known datasets: expected files, published row counts, whether present and verified."""
    config_dir = os.path.abspath(config or default_config_dir())
    ids = _config_ids(config_dir)
    table = Table(title="ctrbench datasets" + (f" (data root {data_root})" if data_root else ""))
    for col in ("dataset_id", "files", "rows train / valid / test", "present", "verified"):
        table.add_column(col, overflow="fold")
    if details:
        table.add_column("processing", overflow="fold")
    known = [d for d in registry.DATASETS if d in ids]
    others = [d for d in ids if d not in registry.DATASETS]
    for dataset_id in known + (others if all_ else []):
        params, paths = _dataset_paths(config_dir, dataset_id, data_root)
        info = registry.dataset(dataset_id)
        split_set, located = verify_mod.locate(dataset_id, paths, params["data_root"])
        if split_set is not None:
            presence, verified = verify_mod.status_from_cache(split_set, located)
            rows = verify_mod.describe_rows(split_set, tuple(located))
            files = verify_mod.describe_files(list(located.values()), params["data_root"])
        else:
            present = [p for p in paths.values() if p and os.path.exists(p)]
            presence = (
                "yes"
                if len(present) == len([p for p in paths.values() if p])
                else ("partial" if present else "no")
            )
            verified, rows = "-", "-"
            files = verify_mod.describe_files([p for p in paths.values() if p], params["data_root"])
        if info is not None:
            processing = info.processing
        elif params.get("synthetic"):
            processing = "synthetic, generated on first use"
        else:
            processing = f"reads {split_set.name} files" if split_set else "user-defined"
        row = [dataset_id, files, rows, presence, verified] + ([processing] if details else [])
        table.add_row(*row)
    out.print(table)
    missing = [d for d in registry.DATASETS if d not in ids]
    if missing:
        console.print(f"registry ids without a dataset config section: {', '.join(missing)}")
    if not all_ and others:
        console.print(f"{len(others)} more config ids (synthetic or user-defined): --all lists them")
    console.print("'ctrbench data verify ID' checks a download; --details shows each id's processing")


def data_verify(
    dataset_id: str = typer.Argument(..., help="dataset_id (or split name, e.g. Criteo_x4)."),
    config: Optional[str] = ConfigOpt,
    data_root: Optional[str] = DataRootOpt,
    require_all: bool = typer.Option(
        False, "--require-all", help="Fail (exit 2) when a split file is missing."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-hash files even if unchanged."),
    sources: bool = typer.Option(False, "--sources", help="Only print where to download."),
):
    """MD5 and row count of every split file against the published values; exit 2 on a mismatch."""
    config_dir = os.path.abspath(config or default_config_dir())
    info, split_set = registry.resolve(dataset_id)
    if split_set is None:
        raise CTRBenchError(
            f"no published files are known for '{dataset_id}'; verify covers "
            f"{', '.join(sorted(registry.DATASETS))}"
        )
    out.print(f"{dataset_id}: {split_set.name}, {split_set.ratio}", highlight=False)
    out.print(f"download: {split_set.download}", highlight=False)
    if info is not None and info.raw:
        raw = registry.RAW_SOURCES[info.raw]
        out.print(
            f"raw source: {raw.download} -> 'ctrbench data prepare {dataset_id} --from ...'", highlight=False
        )
    if sources:
        return
    config_id = info.dataset_id if info is not None else dataset_id
    params, paths = _dataset_paths(config_dir, config_id, data_root)
    _, located = verify_mod.locate(dataset_id, paths, params["data_root"])
    checks = verify_mod.verify(split_set, located, use_cache=not no_cache)
    table = Table()
    for col in ("split", "file", "status", "rows", "expected rows", "detail"):
        table.add_column(col, overflow="fold")
    for c in checks:
        style = _STATUS_STYLE.get(c.status, "")
        table.add_row(
            c.split,
            c.path,
            f"[{style}]{c.status}[/]" if style else c.status,
            f"{c.rows:,}" if c.rows is not None else "-",
            f"{c.expected_rows:,}" if c.expected_rows is not None else "-",
            c.message or (f"md5 {c.md5}" if c.md5 else ""),
        )
    out.print(table)
    failed = [c for c in checks if c.failed]
    missing = [c for c in checks if c.status == "missing"]
    if failed:
        raise CTRBenchError(
            f"{dataset_id}: {', '.join(f'{c.split} ({c.status})' for c in failed)} "
            f"{'does' if len(failed) == 1 else 'do'} not match the published files; download again "
            f"from {split_set.download}"
        )
    if missing and (require_all or len(missing) == len(checks)):
        raise CTRBenchError(
            f"{dataset_id}: {', '.join(c.path for c in missing)} missing; download from "
            f"{split_set.download} or point --data-root at the folder holding "
            f"{split_set.files[0].path.split('/')[0]}/"
        )
    verified = [c for c in checks if c.status == "ok"]
    summary = f"{dataset_id}: {len(verified)} of {len(checks)} files verified"
    if missing:
        summary += f"; missing: {', '.join(c.split for c in missing)}"
    out.print(summary, highlight=False)


def data_prepare(
    dataset_id: str = typer.Argument(..., help="dataset_id (or split name) to prepare."),
    source: str = typer.Option(..., "--from", help="The raw download: a file or folder."),
    out_dir: Optional[str] = typer.Option(
        None, "--out", help="Data root to write under (default: the dataset config's data_root)."
    ),
    config: Optional[str] = ConfigOpt,
    force: bool = typer.Option(False, "--force", help="Replace existing split files."),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Split seed (default: the recipe's, e.g. 2018 for x4 splits)."
    ),
    neg_sample_rate: float = typer.Option(
        0.0, "--neg-sample-rate", help="Terabyte: fraction of negative training rows to drop (DLRM: 0.875)."
    ),
):
    """Build DATASET_ID's split files from a raw download (Kaggle Criteo/Avazu/KKBox, GroupLens ML-1M,
    Criteo Terabyte days, AFN/NFM libsvm), streaming; then compare them with the published MD5s."""
    setup_logging()
    info, split_set = registry.resolve(dataset_id)
    if split_set is None:
        raise CTRBenchError(f"unknown dataset '{dataset_id}'; 'ctrbench data list' shows the known ids")
    kind = "afn_libsvm" if split_set.name in registry.LIBSVM_HEADERS else (info.raw if info else None)
    if kind:
        out.print(f"raw source: {registry.RAW_SOURCES[kind].download}", highlight=False)
        out.print(f"recipe: {registry.RAW_SOURCES[kind].recipe}", highlight=False)
    out.print(f"published split: {split_set.download}", highlight=False)
    if out_dir is None:
        config_dir = os.path.abspath(config or default_config_dir())
        config_id = info.dataset_id if info is not None else dataset_id
        params, _ = _dataset_paths(config_dir, config_id, None)
        out_dir = params["data_root"]
    result = prep.prepare(
        dataset_id, source, out_dir, force=force, seed=seed, neg_sample_rate=neg_sample_rate
    )
    table = Table(title=f"{result.split_set} written under {out_dir}")
    for col in ("split", "file", "rows", "published file"):
        table.add_column(col, overflow="fold")
    for c in result.checks:
        if c.expected_md5:
            same = "identical (md5)" if c.status == "ok" else "differs: " + c.message
        elif c.expected_rows is not None:
            same = "row count matches" if c.status == "ok" else c.message
        else:
            same = "no published checksum"
        table.add_row(c.split, c.path, f"{c.rows:,}" if c.rows is not None else "-", same)
    out.print(table)
    out.print(f"use it with --data-root {out_dir} (or set data_root in the dataset config)", highlight=False)
