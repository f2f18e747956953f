"""One run, end to end: config -> built data -> feature map -> model -> fit -> metrics -> record.

    params = config.load_config(config_dir, expid, overrides)
    directory = build.build(params)                  # reuse when the build key matches
    feature_map = loader.load_feature_map(directory, params)
    loaders = loader.make_loaders(feature_map, directory, params)
    model = model_zoo.create_model(params, feature_map)
    Trainer(model, params).fit(train, valid, epochs)   # early stopping, best checkpoint
    valid/test metrics -> records.append_record(results, record) -> rich table
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
from .errors import CTRBenchError
from .records import append_record, environment, now
from .train import Trainer

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


def _file_logger(params: dict) -> logging.Handler:
    directory = os.path.join(params["model_root"], params["dataset_id"])
    os.makedirs(directory, exist_ok=True)
    handler = logging.FileHandler(os.path.join(directory, f"{params['model_id']}.log"), mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s P%(process)d %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return handler


def prepare_data(params: dict, quiet: bool = False):
    """Build/reuse the dataset and load its feature map."""
    directory = build_mod.build(params, quiet=quiet)
    feature_map = loader_mod.load_feature_map(directory, params)
    return directory, feature_map


def run_experiment(params: dict, results_path: str | None, console: Console | None = None,
                   quiet: bool = False) -> dict:
    """Train and evaluate one resolved config; returns (and appends) its run record."""
    from fuxictr.pytorch.torch_utils import seed_everything

    import model_zoo

    console = console or Console(stderr=True)
    device = select_device(params.get("gpu", -1))
    handler = _file_logger(params)
    try:
        seed_everything(int(params.get("seed", 2023)))
        directory, feature_map = prepare_data(params, quiet=quiet)
        loaders = loader_mod.make_loaders(feature_map, directory, params, pin_memory=device != "cpu")
        if "train" not in loaders or "valid" not in loaders:
            raise CTRBenchError(f"dataset '{params['dataset_id']}' needs train and valid splits "
                                f"(set valid_data or valid_size)")
        model = model_zoo.create_model(params, feature_map)
        n_params = count_parameters(model)
        if not quiet:
            console.print(f"[bold]{params['expid']}[/]: {params['model']} on {params['dataset_id']} "
                          f"({n_params:,} parameters, {loaders['train'].num_samples:,} train rows, {device})",
                          highlight=False)
        if device != "cpu":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(model, params, console)
        started = time.time()
        state = trainer.fit(loaders["train"], loaders["valid"], int(params.get("epochs", 1)))
        train_seconds = time.time() - started
        metrics = {"valid": trainer.evaluate(loaders["valid"])}
        if "test" in loaders:
            metrics["test"] = trainer.evaluate(loaders["test"])
        epochs_run = max(1, state.epoch)
        record = {
            "time": now(), "expid": params["expid"], "model": params["model"],
            "report_name": params.get("report_name") or params["model"],
            "dataset_id": params["dataset_id"], "seed": int(params.get("seed", 2023)),
            "valid": metrics["valid"], "test": metrics.get("test"),
            "best_epoch": state.best_epoch, "epochs_run": state.epoch, "params": n_params,
            "train_seconds": round(train_seconds, 3),
            "seconds_per_epoch": round(state.train_seconds / epochs_run, 3),
            "samples_per_second": round(state.train_samples / max(state.train_seconds, 1e-9), 1),
            "peak_memory_mb": round(_peak_memory_mb(device), 1), "device": device,
            "history": state.history, "config_hash": config_mod.config_hash(params),
            "config": {k: v for k, v in params.items() if not k.startswith("_")},
            "env": environment(),
        }
        if results_path:
            append_record(results_path, record)
        if not quiet:
            console.print(metrics_table(record))
        return record
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


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
