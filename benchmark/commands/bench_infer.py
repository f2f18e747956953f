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
from typing import List, Optional

import typer

from ..errors import CTRBenchError
from ..inference import bench_infer, render
from .common import ConfigOpt, DataRootOpt, DebugOpt, GpuOpt

__all__ = ["bench_infer", "bench_infer_cmd"]


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
    gpu: Optional[int] = GpuOpt,
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Overrides for --expid: key=value."),
    baseline_set: Optional[List[str]] = typer.Option(
        None, "--baseline-set", help="Overrides for --baseline-expid."
    ),
    data_root: Optional[str] = DataRootOpt,
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
    debug: bool = DebugOpt,
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
