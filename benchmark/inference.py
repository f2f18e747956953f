"""Inference timing (what ``ctrbench bench-infer`` measures): ms per 100 samples of a model and its ratio to a
baseline on the same rows (IBNet Table V).

Both models run on the same dataset, split, rows, batch size and device. Each model predicts the first
``batches`` batches of the split in eval mode under ``torch.no_grad``, after ``warmup`` untimed batches; the
pass is repeated ``repeats`` times, alternating between the models so that drift in machine load hits both
alike, and the mean ± std over repeats is reported as ms per 100 samples (host-to-device copies are part of
the forward, as in ``predict``; CUDA is synchronised around every pass). The paper's "+x%" is
``(t_model / t_baseline - 1) * 100``. Weights: a weights file, the best checkpoint of the same finished run,
or the initial weights (the cost of a forward does not depend on the weights); files load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import statistics
import time

from .errors import CTRBenchError
from .util import sync


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
        from .checkpoint import load_weights, read_weights
        from .runner import prepare_run

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
        from .train import Trainer

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
