"""One run, end to end: config -> built data -> feature map -> model -> fit -> metrics -> record.

    params = config.load_config(config_dir, expid, overrides)
    directory = build.build(params)                  # reuse when the build key matches
    feature_map = loader.load_feature_map(directory, params)
    loaders = loader.make_loaders(feature_map, directory, params)
    model = model_zoo.create_model(params, feature_map)
    Trainer(model, params).fit(train, valid, epochs)   # early stopping, best checkpoint, resume state
    valid/test metrics -> records.append_record(results, record) -> rich table

A run's files live in ``<model_root>/<dataset_id>/``: ``<run_id>.model`` (best weights),
``<run_id>.resume.pt`` (full training state while the run is unfinished; removed once its record
is written) and ``<run_id>.log``, where run_id is the expid (or ``_run_id``, set by sweeps so that
parallel runs of one expid never share files). ``resume=True`` continues from the resume state.
Under torchrun (``WORLD_SIZE`` > 1) the run trains data-parallel (``benchmark/distributed.py``).
The record carries the config hash (computed before anything else touches the params), timings
(s/epoch, samples/s, loader wait, test-set inference ms per 100 samples), peak memory and the
``amp``/``compile``/``fused_optimizer``/``world_size``/``resumed`` switches.
"""

from __future__ import annotations

import logging
import os
import resource
import time

import torch
from rich.console import Console
from rich.table import Table

from . import config as config_mod
from .data import build as build_mod
from .data import loader as loader_mod
from . import distributed
from .errors import CTRBenchError
from .records import append_record, environment, now
from .train import Trainer, amp_name

log = logging.getLogger("ctrbench")


def select_device(gpu) -> str:
    gpu = int(gpu if gpu is not None else -1)
    if gpu < 0:
        return "cpu"
    if not torch.cuda.is_available():
        raise CTRBenchError(f"--gpu {gpu} asks for CUDA device {gpu}, but torch sees no GPU; use --gpu -1")
    if gpu >= torch.cuda.device_count():
        raise CTRBenchError(f"--gpu {gpu}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return f"cuda:{gpu}"


def count_parameters(model, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _file_logger(params: dict, run_id: str | None = None, rank: int = 0) -> logging.Handler:
    directory = os.path.join(params["model_root"], params["dataset_id"])
    os.makedirs(directory, exist_ok=True)
    name = run_id or params["model_id"]
    if rank:
        name = f"{name}.rank{rank}"
    handler = logging.FileHandler(os.path.join(directory, f"{name}.log"), mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s P%(process)d %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return handler


def prepare_data(params: dict, quiet: bool = False):
    """Build/reuse the dataset and load its feature map."""
    directory = build_mod.build(params, quiet=quiet)
    feature_map = loader_mod.load_feature_map(directory, params)
    return directory, feature_map


def run_paths(params: dict) -> dict[str, str]:
    """Files of one run under ``<model_root>/<dataset_id>/``, named by ``_run_id`` (sweeps give each
    run its own) or the expid: best checkpoint, resume state and log."""
    run_id = str(params.get("_run_id") or params["model_id"])
    directory = os.path.join(params["model_root"], params["dataset_id"])
    return {"run_id": run_id, "checkpoint": os.path.abspath(os.path.join(directory, f"{run_id}.model")),
            "state": os.path.abspath(os.path.join(directory, f"{run_id}.resume.pt"))}


def run_experiment(params: dict, results_path: str | None, console: Console | None = None,
                   quiet: bool = False, resume: bool = False) -> dict:
    """Train and evaluate one resolved config; returns (and appends) its run record.

    ``resume``: continue from the run's resume state when one exists (saved by an interrupted run
    of the same config), else start afresh. Under torchrun the run is data-parallel over the ranks.
    """
    from fuxictr.pytorch.torch_utils import seed_everything

    import model_zoo

    console = console or Console(stderr=True)
    chash = config_mod.config_hash(params)
    ctx = distributed.init(params.get("gpu", -1))
    gpu = distributed.device_index(ctx, params.get("gpu", -1))
    device = select_device(gpu)
    quiet = quiet or not ctx.is_main
    paths = run_paths(params)
    handler = _file_logger(params, paths["run_id"], ctx.rank)
    try:
        seed = int(params.get("seed", 2023))
        seed_everything(seed)
        if ctx.is_main:
            directory, feature_map = prepare_data(params, quiet=quiet)
        distributed.barrier(ctx)
        if not ctx.is_main:
            directory, feature_map = prepare_data(params, quiet=True)
        loaders = loader_mod.make_loaders(feature_map, directory, params, pin_memory=device != "cpu")
        if "train" not in loaders or "valid" not in loaders:
            raise CTRBenchError(f"dataset '{params['dataset_id']}' needs train and valid splits "
                                f"(set valid_data or valid_size)")
        model = model_zoo.create_model({**params, "gpu": gpu}, feature_map)
        model.checkpoint = paths["checkpoint"]
        n_params = count_parameters(model)
        if not quiet:
            where = f"{device}, {ctx.world_size} processes" if ctx.enabled else device
            console.print(f"[bold]{params['expid']}[/]: {params['model']} on {params['dataset_id']} "
                          f"({n_params:,} parameters, {loaders['train'].num_samples:,} train rows, {where})",
                          highlight=False)
        if device != "cpu":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(model, params, console, dist=ctx, state_file=paths["state"],
                          progress_file=params.get("_progress_file"), config_hash=chash)
        if resume and os.path.isfile(paths["state"]):
            state = trainer.load_state(paths["state"])
            if not quiet:
                console.print(f"resuming {paths['run_id']} at epoch {state.epoch + 1}, batch {state.batch} "
                              f"({paths['state']})", highlight=False)
        elif resume:
            log.info("No resume state at %s; starting from scratch", paths["state"])
        started = time.time()
        state = trainer.fit(loaders["train"], loaders["valid"], int(params.get("epochs", 1)))
        train_seconds = time.time() - started
        metrics = {"valid": trainer.evaluate(loaders["valid"])}
        infer = None
        if "test" in loaders:
            metrics["test"] = trainer.evaluate(loaders["test"])
            if trainer.last_predict_rows:
                infer = trainer.last_predict_seconds * 1000.0 / trainer.last_predict_rows * 100.0
        epochs_run = max(1, state.epoch)
        record = {
            "time": now(), "expid": params["expid"], "model": params["model"],
            "report_name": params.get("report_name") or params["model"],
            "dataset_id": params["dataset_id"], "seed": seed,
            "valid": metrics["valid"], "test": metrics.get("test"),
            "best_epoch": state.best_epoch, "epochs_run": state.epoch, "params": n_params,
            "train_seconds": round(train_seconds, 3),
            "seconds_per_epoch": round(state.train_seconds / epochs_run, 3),
            "samples_per_second": round(state.train_samples / max(state.train_seconds, 1e-9), 1),
            "infer_ms_per_100": round(infer, 4) if infer is not None else None,
            "loader_wait_pct": round(100.0 * state.loader_seconds / max(state.train_seconds, 1e-9), 3),
            "peak_memory_mb": round(_peak_memory_mb(device), 1), "device": device,
            "amp": amp_name(params.get("amp")), "compile": params.get("compile") or False,
            "fused_optimizer": trainer.fused_optimizer,
            "world_size": ctx.world_size, "resumed": state.resumed,
            "history": state.history, "config_hash": chash,
            "config": {k: v for k, v in params.items() if not k.startswith("_")},
            "env": environment(),
        }
        if results_path and ctx.is_main:
            append_record(results_path, record)
        trainer.remove_state()
        trainer.write_progress("done", force=True)
        if not quiet:
            console.print(metrics_table(record))
        return record
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        distributed.shutdown(ctx)


def _peak_memory_mb(device: str) -> float:
    if device != "cpu":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def metrics_table(record: dict) -> Table:
    table = Table(title=f"{record['expid']} (seed {record['seed']}, best epoch {record['best_epoch']})")
    table.add_column("split")
    names = list(record["valid"].keys())
    for name in names:
        table.add_column(name, justify="right")
    for split in ("valid", "test"):
        if record.get(split):
            table.add_row(split, *[f"{record[split][n]:.6f}" for n in names])
    return table
