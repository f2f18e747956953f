"""``ctrbench bench-infer``: inference time in ms per 100 samples and its ratio to a baseline (IBNet Table V).

    ctrbench bench-infer --expid IBNet_frappe_partial --baseline-expid DCN_frappe_ibnet_partial --batches 20

Both models run on the same dataset (the baseline's ``dataset_id`` is set to the timed expid's), the same
split and rows, the same batch size and device. Each model predicts the first ``--batches`` batches of the
split (``test`` by default) in eval mode under ``torch.no_grad``, after ``--warmup`` untimed batches;
the pass is repeated ``--repeats`` times, alternating between the models so that drift in machine load hits
both alike, and the mean ± std over repeats is reported as ms per 100 samples (host-to-device copies are
part of the forward, as in ``predict``; CUDA is synchronised around every pass). The paper's "+x%" is
``(t_model / t_baseline - 1) * 100``.

Weights: ``--checkpoint FILE`` loads that weights file; otherwise the best checkpoint of the finished
``ctrbench run`` with the same settings (``<model_root>/<dataset_id>/<run id>.model``) is loaded when present,
else the freshly initialised model is timed (the cost of a forward does not depend on the weights;
``--no-checkpoint`` forces that). Weights files load with ``torch.load(weights_only=True)``: a file from
elsewhere stays data. ``--evaluate`` adds the split's AUC/logloss (meaningful with trained weights).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import List, Optional

import typer

from ..errors import CTRBenchError
from ..util import sync


class _Subject:
    """One model prepared for timing: params, model, the batches it predicts, device."""

    def __init__(
        self,
        params: dict,
        batches_wanted: int,
        split: str,
        batch_size: int | None,
        load_checkpoint: bool | str = True,
        quiet: bool = True,
    ):
        from ..runner import prepare_run
        from ..train import load_weights, read_weights

        self.params = params
        bs = int(batch_size or params.get("eval_batch_size") or params["batch_size"])
        if split not in ("train", "valid", "test"):
            raise CTRBenchError(f"--split {split}: use test, valid or train")
        self.checkpoint, weights = None, None
        if isinstance(load_checkpoint, str):  # --checkpoint FILE: read (as data) before any work
            self.checkpoint = os.path.abspath(load_checkpoint)
            weights = read_weights(self.checkpoint)
        try:
            setup = prepare_run(
                params,
                splits=(split,),
                require=(split,),
                quiet=quiet,
                loader_params={"batch_size": bs, "eval_batch_size": bs},
            )
        except CTRBenchError as exc:
            if f"no {split} split" not in exc.message:
                raise
            raise CTRBenchError(f"{exc.message}; pass --split valid or --split train")
        self.device = setup.device
        self.loader = setup.loaders[split]
        self.batches = []
        for i, batch in enumerate(self.loader):
            if i >= batches_wanted:
                break
            self.batches.append(batch)
        self.samples = sum(len(next(iter(b.values()))) for b in self.batches)
        self.batch_size = bs
        self.model = setup.model
        if load_checkpoint is True and os.path.isfile(setup.paths.checkpoint):  # the same run's best weights
            self.checkpoint = setup.paths.checkpoint
        if self.checkpoint:
            load_weights(self.model, self.checkpoint, weights)
        self.model.eval()
        self.n_params = setup.n_params
        self.times: list[float] = []  # seconds per pass over self.batches

    def run_pass(self, batches=None) -> float:
        import torch

        batches = self.batches if batches is None else batches
        sync(self.device)
        started = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                self.model.forward(batch)["y_pred"]
        sync(self.device)
        return time.perf_counter() - started

    def ms_per_100(self) -> list[float]:
        return [t * 1000.0 / self.samples * 100.0 for t in self.times]

    def evaluate(self) -> dict:
        from ..train import Trainer

        trainer = Trainer(self.model, self.params)
        return trainer.evaluate(self.loader)


def bench_infer(
    params: dict,
    baseline: dict | None = None,
    batches: int = 10,
    repeats: int = 5,
    warmup: int = 2,
    split: str = "test",
    batch_size: int | None = None,
    load_checkpoint: bool | str = True,
    evaluate: bool = False,
) -> list[dict]:
    """Time ``params`` (and ``baseline``) on the same rows; one result dict per model."""
    import torch

    if batches < 1 or repeats < 1 or warmup < 0:
        raise CTRBenchError("--batches and --repeats must be >= 1 and --warmup >= 0")
    subjects = [_Subject(params, batches, split, batch_size, load_checkpoint)]
    if baseline is not None:  # --checkpoint FILE is the timed model's; the baseline takes its own run's
        subjects.append(_Subject(baseline, batches, split, batch_size, bool(load_checkpoint)))
        if subjects[1].samples != subjects[0].samples:
            raise CTRBenchError(
                "the baseline sees a different number of rows; give both expids the same "
                "dataset and batch size"
            )
    if subjects[0].samples == 0:
        raise CTRBenchError(f"the {split} split of '{params['dataset_id']}' is empty")
    for subject in subjects:
        if warmup:
            subject.run_pass(subject.batches[:warmup])
    for _ in range(repeats):
        for subject in subjects:
            subject.times.append(subject.run_pass())
    results = []
    base_ms = statistics.mean(subjects[-1].ms_per_100()) if baseline is not None else None
    for i, subject in enumerate(subjects):
        ms = subject.ms_per_100()
        result = {
            "expid": subject.params["expid"],
            "model": subject.params["model"],
            "dataset_id": subject.params["dataset_id"],
            "split": split,
            "device": subject.device,
            "threads": torch.get_num_threads(),
            "params": subject.n_params,
            "batch_size": subject.batch_size,
            "batches": len(subject.batches),
            "samples": subject.samples,
            "repeats": repeats,
            "ms_per_100": statistics.mean(ms),
            "ms_per_100_std": statistics.stdev(ms) if len(ms) > 1 else 0.0,
            "checkpoint": subject.checkpoint,
            "role": "baseline" if (baseline is not None and i == 1) else "model",
        }
        if base_ms:
            result["ratio"] = result["ms_per_100"] / base_ms
            result["increase_pct"] = (result["ratio"] - 1.0) * 100.0
        if evaluate:
            result["metrics"] = subject.evaluate()
        results.append(result)
    return results


def render(results: list[dict]):
    from rich.table import Table

    first = results[0]
    table = Table(
        title=f"Inference on {first['dataset_id']} ({first['split']}, {first['samples']:,} rows, "
        f"batch {first['batch_size']:,}, {first['device']}, {first['threads']} threads, "
        f"{first['repeats']} repeats)",
        title_justify="left",
    )
    for name, justify in (
        ("expid", "left"),
        ("model", "left"),
        ("#params", "right"),
        ("ms / 100 samples", "right"),
        ("ratio", "right"),
        ("vs baseline", "right"),
        ("weights", "left"),
    ):
        table.add_column(name, justify=justify)
    metric_names = list(first.get("metrics", {}) or {})
    for name in metric_names:
        table.add_column(name, justify="right")
    for r in results:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "–"
        inc = f"{r['increase_pct']:+.0f}%" if "increase_pct" in r and r["role"] != "baseline" else "–"
        row = [
            r["expid"],
            r["model"],
            f"{r['params']:,}",
            f"{r['ms_per_100']:.4f} ± {r['ms_per_100_std']:.4f}",
            ratio,
            inc,
            "checkpoint" if r["checkpoint"] else "initial",
        ]
        row += [f"{r['metrics'][m]:.6f}" for m in metric_names]
        table.add_row(*row)
    return table


def bench_infer_cmd(
    expid: str = typer.Option(..., "--expid", "-e", help="Experiment id to time."),
    baseline_expid: Optional[str] = typer.Option(
        None, "--baseline-expid", help="Expid to compare with (e.g. a DCN expid); run on the same dataset."
    ),
    batches: int = typer.Option(10, "--batches", help="Batches of the split to predict per pass."),
    repeats: int = typer.Option(5, "--repeats", help="Timed passes per model (mean ± std)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed batches before timing."),
    split: str = typer.Option("test", "--split", help="test, valid or train."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Rows per batch (default: the expid's eval batch size)."
    ),
    gpu: Optional[int] = typer.Option(None, "--gpu", help="CUDA device index; -1 for CPU."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Config directory."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Overrides for --expid: key=value."),
    baseline_set: Optional[List[str]] = typer.Option(
        None, "--baseline-set", help="Overrides for --baseline-expid."
    ),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Folder holding the raw datasets."),
    checkpoint: Optional[str] = typer.Option(
        None,
        "--checkpoint",
        help="Weights file to load (loaded with "
        "weights_only=True). Default: the same run's best checkpoint "
        "when one exists.",
    ),
    no_checkpoint: bool = typer.Option(False, "--no-checkpoint", help="Time the initial weights."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Also report the split's metrics."),
    out_file: Optional[str] = typer.Option(None, "--out", help="Write the results as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
):
    """Time inference (ms per 100 samples) of EXPID, and its ratio to --baseline-expid on the same data."""
    from ..config import load_config
    from .common import console, default_config_dir, out, setup_logging

    setup_logging(verbose=False)
    config_dir = config or default_config_dir()
    common = ["verbose=0"] + ([f"gpu={gpu}"] if gpu is not None else [])
    params = load_config(config_dir, expid, common + list(set_ or []), data_root)
    baseline = None
    if baseline_expid:
        baseline = load_config(
            config_dir,
            baseline_expid,
            common + [f"dataset_id={params['dataset_id']}"] + list(baseline_set or []),
            data_root,
        )
    if batch_size is None:
        batch_size = int(params.get("eval_batch_size") or params["batch_size"])
    if checkpoint and no_checkpoint:
        raise CTRBenchError("--checkpoint FILE and --no-checkpoint contradict each other; give one")
    if checkpoint and not os.path.isfile(checkpoint):
        raise CTRBenchError(
            f"--checkpoint {checkpoint} is not a file; give the .model weights of a run "
            f"(<model_root>/<dataset_id>/<run id>.model)"
        )
    weights = checkpoint if checkpoint else not no_checkpoint
    results = bench_infer(params, baseline, batches, repeats, warmup, split, batch_size, weights, evaluate)
    out.print(render(results))
    for r in results:
        out.print(
            f"{r['expid']}: {r['ms_per_100']:.4f} ms/100 samples"
            + (f", {r['ratio']:.2f}x baseline" if "ratio" in r and r["role"] != "baseline" else ""),
            highlight=False,
        )
    if out_file:
        os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
        with open(out_file, "w") as fd:
            json.dump(results, fd, indent=2)
        console.print(f"wrote {out_file}")
