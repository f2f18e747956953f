#!/usr/bin/env python3
"""Training and evaluation throughput: ctrbench's loader + training loop against fuxictr's own loader
path (``RankDataLoader`` -> Ray ``ParquetDataLoader``, fuxictr's ``train_step`` / ``evaluate``) on the
same encoded data and the same model, for DNN-, DCNv2- and IBNet-sized models (IBNet/DCNv2 fall back
to DCN when the zoo lacks them).

Data: a synthetic Criteo-like table (13 numeric + 26 categorical fields, cardinalities up to
``--max-card``) split 8:1:1, built once by ctrbench's builder to h5; the same encoded columns are
written to parquet for fuxictr's loader. Models: embedding 16, MLP 3x400, 3 cross layers, batch
``--batch-size``. Each (model, path) trains ``--epochs`` epoch(s) from the same initial weights,
then evaluates the validation split; per path it prints train and eval samples/s and the share of
step time spent waiting for the next batch (loader wait), then the ratios ctrbench / fuxictr.

Paths:
  ctrbench         the default loop (in-memory loader, Trainer.train_step / Trainer.evaluate)
  ctrbench+fused   the same with ``fused_optimizer: true`` (Adam's fused kernel)
  ctrbench+device  the default loop with ``data_on_device: true`` (the split kept on the training device)
  fuxictr          RankDataLoader(data_format="parquet") + BaseModel.train_step / BaseModel.evaluate

``--ops``: the operator budget instead. aten operators dispatched per training step by phase (forward,
regulariser, loss, backward, clip, optimiser, zero_grad; counted by a TorchDispatchMode) and CPU samples/s
for DNN, DCNv2, DeepFM and IBNet on 13 numeric + 26 categorical fields (Criteo's cardinalities capped at
``--max-card``), batch 4,096, embedding 16: fuxictr (per-field FeatureEmbedding, foreach Adam,
``BaseModel.train_step``) against ctrbench (the fused table, fused Adam, ``Trainer.train_step``), from the
same initial weights on the same synthetic batches.

    OMP_NUM_THREADS=2 python scripts/bench_train.py --ops [--steps 8] [--models ...] [--reg 1e-5]

Before the models, the loader alone (in a fresh process): train rows/s over one epoch without a model,
the bytes of its tensors, and its peak RSS growth (after building the loader and over the epoch) as a
ratio of those bytes.

    OMP_NUM_THREADS=2 python scripts/bench_train.py [--rows 1000000] [--models DNN,DCNv2,IBNet]
        [--paths ctrbench,ctrbench+fused,ctrbench+device,fuxictr] [--batch-size 10000] [--gpu -1|N]
        [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

MODELS = {
    "DNN": {"model": "DNN", "hidden_units": [400, 400, 400], "hidden_activations": "relu"},
    "DCNv2": {
        "model": "DCNv2",
        "model_structure": "parallel",
        "num_cross_layers": 3,
        "dnn_hidden_units": [400, 400, 400],
        "dnn_activations": "relu",
    },
    "DeepFM": {"model": "DeepFM", "dnn_hidden_units": [400, 400, 400], "dnn_activations": "relu"},
    "IBNet": {"model": "IBNet", "num_cross_layers": 3, "dnn_hidden_units": [400, 400, 400]},
}
FALLBACK = {"DCNv2": "DCN", "IBNet": "DCN"}


def data(work: str, rows: int, max_card: int, seed: int) -> tuple[dict, str, dict]:
    """Raw CSVs -> ctrbench build (h5) -> the same columns as parquet; returns params, dir, parquet paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmark.data import h5io
    from benchmark.data.build import build
    from benchmark.data.synth import dataset_config, write_splits

    raw = os.path.join(work, "raw")
    cfg = {"rows": rows, "n_numeric": 13, "n_categorical": 26, "max_cardinality": max_card, "seed": seed}
    stamp = os.path.join(raw, "cfg.json")
    if not (os.path.isfile(stamp) and json.load(open(stamp)) == cfg):
        t = time.perf_counter()
        write_splits(raw, cfg)
        json.dump(cfg, open(stamp, "w"))
        print(f"wrote {rows:,} synthetic rows in {time.perf_counter() - t:.1f}s", flush=True)
    params = dataset_config("bench_train", cfg, raw, min_categr_count=2)
    params.update(
        {
            "dataset_id": "bench_train",
            "data_root": raw,
            "build_root": os.path.join(work, "built"),
            "data_format": "csv",
        }
    )
    t = time.perf_counter()
    directory = build(params, quiet=True)
    print(f"ctrbench build (or reuse): {time.perf_counter() - t:.1f}s -> {directory}", flush=True)
    parquet = {}
    for split in ("train", "valid"):
        path = os.path.join(work, "parquet", f"{split}.parquet")
        parquet[split] = path
        if os.path.isfile(path) and os.path.getmtime(path) > os.path.getmtime(
            os.path.join(directory, "feature_map.json")
        ):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        arrays = {}
        for f in h5io.split_files(directory, split):
            for k, v in h5io.read_block(f).items():
                arrays.setdefault(k, []).append(v)
        table = pa.table(
            {
                k: pa.array(
                    np.concatenate(v).astype(np.float64 if k in ("label",) or k.startswith("I") else np.int64)
                )
                for k, v in arrays.items()
            }
        )
        pq.write_table(table, path)
    return params, directory, parquet


def make_model(name: str, fmap, base: dict, seed: int, fused: bool = True):
    from fuxictr.pytorch.torch_utils import seed_everything

    import model_zoo

    spec = dict(MODELS[name])
    if spec["model"] not in model_zoo.registry():
        fallback = FALLBACK.get(name, "DNN")
        print(f"  {spec['model']} is not registered; measuring {fallback} in its place", flush=True)
        spec = {"model": fallback, "num_cross_layers": 3, "dnn_hidden_units": [400, 400, 400]}
    seed_everything(seed)
    params = {**base, **spec, "embedding_dim": 16, "model_id": f"bench_{name}", "fused_embedding": fused}
    return model_zoo.create_model(params, fmap), params


def timed_training(epoch_batches, train_step, epochs: int) -> tuple[float, float, int, int]:
    """Run ``train_step`` over ``epoch_batches(epoch)`` for each epoch; returns (seconds, seconds spent
    waiting for the next batch, steps, rows)."""
    wait = steps = rows = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        it = epoch_batches(epoch)
        while True:
            t = time.perf_counter()
            batch = next(it, None)
            wait += time.perf_counter() - t
            if batch is None:
                break
            train_step(batch)
            steps += 1
            rows += len(batch["label"])
    return time.perf_counter() - started, wait, steps, rows


def _rss() -> int:
    with open("/proc/self/status") as fd:
        for line in fd:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def loader_child(work: str, params: dict, batch_size: int) -> dict:
    """The in-memory train loader alone: rows/s over one epoch, tensor bytes, peak RSS growth."""
    import gc

    from benchmark.data.build import data_dir
    from benchmark.data.loader import load_feature_map, make_loaders

    directory = data_dir(params)
    fmap = load_feature_map(directory, {**params, "embedding_dim": 16})
    gc.collect()
    base, peak, stop = _rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    train = make_loaders(fmap, directory, {**params, "batch_size": batch_size}, splits=("train",))["train"]
    load_s = time.perf_counter() - t
    after_load = max(peak[0], _rss()) - base
    t, rows = time.perf_counter(), 0
    for batch in train:
        rows += len(batch["label"])
    epoch_s = time.perf_counter() - t
    stop.set()
    sampler.join()
    tensors = train.tensor_bytes()
    return {
        "load_s": load_s,
        "rows_per_s": rows / epoch_s,
        "tensor_gb": tensors / 2**30,
        "rss_after_load_gb": after_load / 2**30,
        "rss_peak_gb": (peak[0] - base) / 2**30,
        "peak_over_tensors": (peak[0] - base) / tensors,
    }


def bench_ctrbench(model, params, directory, fmap, epochs: int, fused: bool, on_device: bool = False) -> dict:
    from benchmark.data.loader import make_loaders
    from benchmark.train import Trainer

    t = time.perf_counter()
    params = {**params, "data_on_device": on_device}
    loaders = make_loaders(fmap, directory, params, splits=("train", "valid"))
    init = time.perf_counter() - t
    trainer = Trainer(model, {**params, "fused_optimizer": fused, "verbose": 0})
    train = loaders["train"]
    model.train()

    def epoch_batches(epoch):
        train.set_epoch(epoch)
        return train.iter_from(0)

    train_s, wait, steps, rows = timed_training(epoch_batches, trainer.train_step, epochs)
    t = time.perf_counter()
    metrics = trainer.evaluate(loaders["valid"])
    eval_s = time.perf_counter() - t
    return {
        "init_s": init,
        "train_sps": rows / train_s,
        "eval_sps": loaders["valid"].num_samples / eval_s,
        "wait_pct": 100 * wait / train_s,
        "steps": steps,
        "AUC": metrics["AUC"],
    }


def bench_fuxictr(model, params, parquet, fmap, epochs: int) -> dict:
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.models import BaseModel

    t = time.perf_counter()
    gens = RankDataLoader(
        fmap,
        stage="train",
        train_data=parquet["train"],
        valid_data=parquet["valid"],
        batch_size=params["batch_size"],
        shuffle=True,
        data_format="parquet",
    )
    train_gen, valid_gen = gens.make_iterator() if hasattr(gens, "make_iterator") else gens
    init = time.perf_counter() - t
    model._max_gradient_norm = 10.0
    model.train()

    def step(batch):  # fuxictr's own step (the zoo's override counts fit's steps, which do not run here)
        return BaseModel.train_step(model, batch)

    train_s, wait, steps, rows = timed_training(lambda epoch: iter(train_gen), step, epochs)
    t = time.perf_counter()
    metrics = model.evaluate(valid_gen, ["logloss", "AUC"])
    eval_s = time.perf_counter() - t
    return {
        "init_s": init,
        "train_sps": rows / train_s,
        "eval_sps": valid_gen.num_samples / eval_s,
        "wait_pct": 100 * wait / train_s,
        "steps": steps,
        "AUC": metrics["AUC"],
    }


# ---- the operator budget of one training step (--ops) ---------------------------------------------------
PHASES = ("forward", "regulariser", "loss", "backward", "clip", "optimiser", "zero_grad")


class OpCounter:
    """Counts the aten operators dispatched inside it, by phase (a ``TorchDispatchMode``)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.counts[counter.phase] = counter.counts.get(counter.phase, 0) + 1
                return func(*args, **(kwargs or {}))

        self.mode, self.counts, self.phase = _Mode(), {}, None

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


def synthetic_fmap(n_numeric: int, n_categorical: int, max_card: int):
    from benchmark.data.synth import CRITEO_CARDINALITY
    from model_zoo.testing import feature_map_from_vocab

    vocab = {f"C{i + 1}": min(CRITEO_CARDINALITY[i % 26], max_card) + 2 for i in range(n_categorical)}
    return feature_map_from_vocab(vocab, 16, numeric=[f"I{i + 1}" for i in range(n_numeric)])


def op_model(name: str, fmap, fused: bool, seed: int, reg: float):
    from model_zoo.testing import model_kwargs

    base = model_kwargs(
        model_root="/tmp/ctrbench_bench_ops", embedding_regularizer=reg, net_dropout=0.0, batch_norm=False
    )
    model, _ = make_model(name, fmap, base, seed, fused=fused)
    for group in model.optimizer.param_groups:  # fuxictr: foreach Adam; ctrbench: the fused kernel
        group["foreach"], group["fused"] = not fused, fused
    return model


def fused_layers(model) -> list:
    from model_zoo.layers.embedding import FusedFeatureEmbedding

    return [m for m in model.modules() if isinstance(m, FusedFeatureEmbedding)]


def phased_step(model, batch, counter: OpCounter, max_norm: float = 10.0):
    """fuxictr's train_step cut into phases (the same operators as BaseModel.train_step; the ctrbench
    path's regulariser and clip take a fused table's norms per field, as its trainer does)."""
    from model_zoo.base import clip_grad_norm

    counter.phase = "zero_grad"
    for opt in model.optimizers():
        opt.zero_grad()
    counter.phase = "forward"
    out = model.forward(batch)
    counter.phase = "loss"
    y = model.get_labels(batch)
    loss = model.add_loss(out, y)
    counter.phase = "regulariser"
    loss = loss + model.regularization_loss()
    counter.phase = "backward"
    loss.backward()
    counter.phase = "clip"
    if fused_layers(model):  # the trainer's clip: the fused tables' norm taken per field
        clip_grad_norm(model, max_norm)
    else:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    counter.phase = "optimiser"
    for opt in model.optimizers():
        opt.step()
    counter.phase = None


def count_ops(model, batch) -> dict:
    phased_step(model, batch, OpCounter())  # optimiser state exists from here on
    with OpCounter() as counter:
        phased_step(model, batch, counter)
    counts = {p: counter.counts.get(p, 0) for p in PHASES}
    counts["total"] = sum(counts.values())
    return counts


def time_steps(step, batches) -> float:
    for b in batches[:2]:
        step(b)
    started, rows = time.perf_counter(), 0
    for b in batches[2:]:
        step(b)
        rows += len(b["label"])
    return rows / (time.perf_counter() - started)


def op_budget(args) -> dict:
    """Operators per training step and CPU samples/s: ctrbench (fused table, fused Adam, the trainer's step)
    against fuxictr (per-field FeatureEmbedding, foreach Adam, BaseModel.train_step), same model and batch."""
    from fuxictr.pytorch.models import BaseModel

    from benchmark.train import Trainer

    fmap = synthetic_fmap(13, 26, args.max_card)
    from model_zoo.testing import random_batch

    batches = [
        random_batch(fmap, args.batch_size, args.seed + i, numeric=torch.rand, id_dtype=torch.int32)
        for i in range(2 + args.steps)
    ]
    print(
        f"operators per training step, {len(fmap.features)} fields (13 numeric + 26 categorical, "
        f"{sum(s.get('vocab_size', 0) for s in fmap.features.values()):,} embedding rows), batch "
        f"{args.batch_size:,}, dim 16, embedding_regularizer {args.reg}; torch threads {torch.get_num_threads()}",
        flush=True,
    )
    header = "".join(f"{p:>12s}" for p in (*PHASES, "total"))
    results = {}
    for name in [m for m in args.models.split(",") if m]:
        row = {}
        for path, fused in (("fuxictr", False), ("ctrbench", True)):
            model = op_model(name, fmap, fused, args.seed, args.reg)
            model.train()
            counts = count_ops(model, batches[0])
            if fused:
                trainer = Trainer(
                    model, {"gpu": -1, "verbose": 0, "max_gradient_norm": 10.0, "seed": args.seed}
                )

                def step(b, trainer=trainer):
                    return trainer.train_step(b)
            else:
                model._max_gradient_norm = 10.0

                def step(b, model=model):
                    return BaseModel.train_step(model, b)

            with OpCounter() as counter:
                counter.phase = "step"
                step(batches[1])
            counts["real step"] = counter.counts.get("step", 0)
            counts["samples/s"] = time_steps(step, batches) if args.steps else float("nan")
            row[path] = counts
        results[name] = row
        print(f"\n{name:8s}{header}{'real step':>12s}{'samples/s':>12s}")
        for path, c in row.items():
            cells = "".join(f"{c[p]:>12,d}" for p in (*PHASES, "total"))
            print(f"{path:8s}{cells}{c['real step']:>12,d}{c['samples/s']:>12,.0f}", flush=True)
        f, c = row["fuxictr"], row["ctrbench"]
        print(
            f"ratio   ctrbench/fuxictr operators {c['total'] / f['total']:.2f} (phased), "
            f"{c['real step'] / f['real step']:.2f} (each path's own step; target <= 0.40); "
            f"samples/s x{c['samples/s'] / f['samples/s']:.2f}"
        )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--max-card", type=int, default=20_000)
    ap.add_argument("--models", default="DNN,DCNv2,IBNet")
    ap.add_argument("--paths", default="ctrbench,ctrbench+fused,ctrbench+device,fuxictr")
    ap.add_argument("--gpu", type=int, default=-1, help="CUDA device index (-1: CPU)")
    ap.add_argument("--child-loader", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None)
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--work", default="/tmp/ctrbench_bench_train")
    ap.add_argument("--json", default=None, help="Also write the results here.")
    ap.add_argument(
        "--ops", action="store_true", help="Operators per step and CPU samples/s on synthetic batches."
    )
    ap.add_argument("--steps", type=int, default=10, help="--ops: timed steps per path (0: count only)")
    ap.add_argument("--reg", type=float, default=1e-5, help="--ops: embedding_regularizer")
    args = ap.parse_args()
    logging.disable(logging.INFO)
    results = {}
    if args.threads:
        torch.set_num_threads(args.threads)
    from benchmark.data.loader import load_feature_map

    if args.ops:
        if args.models == "DNN,DCNv2,IBNet":
            args.models = "DNN,DCNv2,DeepFM,IBNet"
        if args.batch_size == 10_000:
            args.batch_size = 4096
        res = op_budget(args)
        if args.json:
            with open(args.json, "w") as fd:
                json.dump(res, fd, indent=2)
        return
    if args.child_loader:
        params = json.loads(sys.stdin.read())
        print(json.dumps(loader_child(args.work, params, args.batch_size)))
        return
    params, directory, parquet = data(args.work, args.rows, args.max_card, args.seed)
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child-loader",
            "--work",
            args.work,
            "--batch-size",
            str(args.batch_size),
        ],
        input=json.dumps(params),
        capture_output=True,
        text=True,
    )
    if child.returncode == 0:
        lo = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"loader alone: {lo['rows_per_s']:,.0f} train rows/s, read in {lo['load_s']:.1f}s, tensors "
            f"{lo['tensor_gb']:.3f} GB, RSS growth {lo['rss_after_load_gb']:.3f} GB after reading and "
            f"{lo['rss_peak_gb']:.3f} GB at its peak over the epoch = {lo['peak_over_tensors']:.2f}x the tensors "
            f"(target <= 1.2x)",
            flush=True,
        )
        results[("loader", "alone")] = lo
    else:
        print(f"loader benchmark failed: {child.stderr[-1500:]}", flush=True)
    fmap = load_feature_map(directory, {**params, "embedding_dim": 16})
    base = {
        **params,
        "batch_size": args.batch_size,
        "eval_batch_size": args.batch_size,
        "seed": args.seed,
        "gpu": args.gpu,
        "verbose": 0,
        "model_root": os.path.join(args.work, "ck"),
        "metrics": ["logloss", "AUC"],
        "optimizer": "adam",
        "loss": "binary_crossentropy",
        "learning_rate": 1e-3,
        "embedding_regularizer": 0,
        "net_regularizer": 0,
        "net_dropout": 0.0,
        "batch_norm": False,
    }
    paths = [p for p in args.paths.split(",") if p]
    print(
        f"device {'cuda:%d' % args.gpu if args.gpu >= 0 else 'cpu'}, "
        f"torch threads {torch.get_num_threads()}, batch {args.batch_size:,}, {args.epochs} epoch(s) of "
        f"{int(args.rows * 0.8):,} train rows, {int(args.rows * 0.1):,} valid rows",
        flush=True,
    )
    for name in [m for m in args.models.split(",") if m]:
        for path in paths:
            model, mparams = make_model(name, fmap, base, args.seed, fused=path != "fuxictr")
            n_params = sum(p.numel() for p in model.parameters())
            if path == "fuxictr":
                res = bench_fuxictr(model, mparams, parquet, fmap, args.epochs)
            else:
                res = bench_ctrbench(
                    model,
                    mparams,
                    directory,
                    fmap,
                    args.epochs,
                    fused=path.endswith("+fused"),
                    on_device=path.endswith("+device"),
                )
            res["params"] = n_params
            results[(name, path)] = res
            print(
                f"{name:6s} {path:15s} train {res['train_sps']:>9,.0f} samples/s  eval {res['eval_sps']:>9,.0f} "
                f"samples/s  loader wait {res['wait_pct']:5.2f}%  init {res['init_s']:.1f}s  "
                f"valid AUC {res['AUC']:.4f}  ({n_params:,} params)",
                flush=True,
            )
    if "fuxictr" in paths:
        print("\nratios against fuxictr's loader path (target: train >= 1.5x, eval >= 2x; loader wait < 2%)")
        for name in [m for m in args.models.split(",") if m]:
            base_res = results.get((name, "fuxictr"))
            for path in paths:
                if path == "fuxictr" or (name, path) not in results:
                    continue
                r = results[(name, path)]
                print(
                    f"{name:6s} {path:15s} train x{r['train_sps'] / base_res['train_sps']:.2f}  "
                    f"eval x{r['eval_sps'] / base_res['eval_sps']:.2f}  loader wait {r['wait_pct']:.2f}%"
                )
    if args.json:
        with open(args.json, "w") as fd:
            json.dump({f"{k[0]}/{k[1]}": v for k, v in results.items()}, fd, indent=2)


if __name__ == "__main__":
    main()
