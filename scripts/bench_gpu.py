#!/usr/bin/env python3
"""One-shot GPU benchmark: DCNv2 at embedding 16 on a synthetic Criteo_x1-shaped dataset held on the device.

Data: ``--rows`` rows (default 33M, Criteo_x1's size) x 39 categorical fields as int32 on the device
(Criteo_x1 encodes its 13 numeric fields as categories too): 26 fields with Criteo's cardinalities (capped
at ``--max-card``) and 13 with 64 buckets; labels from a planted logistic model of per-id weights (so AUC
means something); the last 10% is the held-out test split.

Throughput matrix: samples/s of training steps (fused Adam, embedding_regularizer 0) for precision
{fp32, tf32, bf16 autocast} x embedding {per_field (fuxictr's), fused} x {eager, compiled} x batch
{4096, 16384}; per cell also the loader's share of step time (the device-side gather of the batch) and the
peak device memory. Cells are skipped once ``--budget-s`` is spent (the script must finish in under 8
minutes on one H100). Then one epoch of fp32 and one of bf16 (fused, eager, batch 16384) and their test
AUCs (target: equal within 1e-4), against BARS' V100 (88k samples/s) and NVIDIA's A100 (1.37M) anchors.

``--dry-run``: tiny sizes on whatever device there is (CPU here; ``compile`` with the eager backend), a few
steps per cell: the suite runs it (tests/test_bench_scripts.py) so the script cannot rot.

Install on a bare device machine (it has CUDA torch, no network): on the workstation, download the wheels
into a folder of the working tree (``wheels/``; it travels with the tree, or name it in the device run's
``carry`` if it is git-ignored):

    python -m pip download fuxictr==2.3.10 "polars<2" --no-deps -d wheels/
    # then, on the device machine:
    pip install --no-deps wheels/*.whl
    mkdir -p /tmp/stub/ray && touch /tmp/stub/ray/__init__.py   # fuxictr imports ray at import time
    PYTHONPATH=/tmp/stub:. python scripts/bench_gpu.py [--rows 33000000] [--budget-s 360]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

ANCHORS = {"BARS DCNv2, V100": 88_000, "NVIDIA DCNv2, A100 AMP": 1_370_000}
CRITEO_CARD = [1460, 583, 10_131_227, 2_202_608, 305, 24, 12517, 633, 3, 93145, 5683, 8_351_593, 3194, 27,
               14992, 5_461_306, 10, 5652, 2173, 4, 7_046_547, 18, 15, 286_181, 105, 142_572]  # fmt: skip


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def feature_map(max_card: int):
    from model_zoo.testing import feature_map_from_vocab

    vocab = {f"I{i + 1}": 64 + 2 for i in range(13)}
    vocab.update({f"C{i + 1}": min(c, max_card) + 2 for i, c in enumerate(CRITEO_CARD)})
    return feature_map_from_vocab(vocab, 16)


def make_data(fmap, rows: int, device, seed: int):
    """(ids int32 (rows, 39), labels float32 (rows,)) on ``device``, built in chunks."""
    g = torch.Generator(device=device).manual_seed(seed)
    sizes = [spec["vocab_size"] for spec in fmap.features.values()]
    weights = [torch.randn(n, generator=g, device=device) * 0.5 for n in sizes]
    X = torch.empty(rows, len(sizes), dtype=torch.int32, device=device)
    y = torch.empty(rows, dtype=torch.float32, device=device)
    chunk = 1 << 22
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        logit = torch.full((n,), -1.0, device=device)
        for j, size in enumerate(sizes):  # skewed ids (a power law, as Criteo's), never the padding 0
            u = torch.rand(n, generator=g, device=device)
            ids = (1 + (u**3) * (size - 1)).long().clamp_(max=size - 1)
            X[start : start + n, j] = ids.int()
            logit += weights[j][ids] / len(sizes) ** 0.5
        y[start : start + n] = torch.bernoulli(torch.sigmoid(logit), generator=g)
    return X, y


def build(fmap, fused: bool, device, seed: int):
    from model_zoo import get_model_class
    from model_zoo.testing import model_kwargs

    torch.manual_seed(seed)
    model = get_model_class("DCNv2")(
        fmap,
        **model_kwargs(
            gpu=device.index if device.type == "cuda" else -1,
            embedding_dim=16,
            model_structure="parallel",
            num_cross_layers=3,
            dnn_hidden_units=[400, 400, 400],
            dnn_activations="relu",
            net_dropout=0.0,
            batch_norm=False,
            fused_embedding=fused,
        ),
    )
    model.to(device)
    for group in model.optimizer.param_groups:
        group["fused"], group["foreach"] = True, False
    return model


class Batches:
    """Shuffled batches gathered on the device from the resident split; times the gathers."""

    def __init__(self, X, y, names, batch_size: int, device, seed: int):
        self.X, self.y, self.names, self.bs, self.device = X, y, names, batch_size, device
        self.perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(device)
        self.pos, self.seconds = 0, 0.0

    def next(self) -> dict:
        t = time.perf_counter()
        if self.pos + self.bs > len(self.perm):
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.bs]
        self.pos += self.bs
        cols = self.X[idx]
        batch = {name: cols[:, j] for j, name in enumerate(self.names)}
        batch["label"] = self.y[idx]
        sync(self.device)
        self.seconds += time.perf_counter() - t
        return batch


def precision(mode: str, device):
    """(autocast context, tf32 on) for fp32 / tf32 / bf16."""
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    if mode == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model, forward, batch, amp):
    for opt in model.optimizers():
        opt.zero_grad(set_to_none=True)
    with amp:
        out = forward(batch)
    loss = model.compute_loss({k: v.float() for k, v in out.items()}, model.get_labels(batch))
    loss.backward()
    for opt in model.optimizers():
        opt.step()
    return loss


def cell(fmap, data, names, args, device, mode, fused, compiled, batch_size) -> dict:
    model = build(fmap, fused, device, args.seed)
    model.train()
    forward = model
    if compiled:
        forward = torch.compile(model, backend=args.compile_backend)
    amp = precision(mode, device)
    batches = Batches(*data, names, batch_size, device, args.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for _ in range(args.warmup):
        train_step(model, forward, batches.next(), amp)
    sync(device)
    warm_s = time.perf_counter() - t
    batches.seconds = 0.0
    t = time.perf_counter()
    for _ in range(args.steps):
        train_step(model, forward, batches.next(), amp)
    sync(device)
    total = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {
        "samples_s": args.steps * batch_size / total,
        "loader_share": batches.seconds / total,
        "peak_gib": peak / 2**30,
        "warmup_s": warm_s,
    }


def epoch_auc(fmap, data, names, args, device, mode) -> tuple[float, float]:
    """(test AUC, samples/s) after one epoch of training (fused, eager, batch --auc-batch-size)."""
    from sklearn.metrics import roc_auc_score

    X, y = data
    n_train = int(len(y) * 0.9)
    model = build(fmap, True, device, args.seed)
    model.train()
    amp = precision(mode, device)
    batches = Batches(X[:n_train], y[:n_train], names, args.auc_batch_size, device, args.seed)
    steps = max(1, n_train // args.auc_batch_size)
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        train_step(model, model, batches.next(), amp)
    sync(device)
    sps = steps * args.auc_batch_size / (time.perf_counter() - t)
    model.eval()
    preds = []
    with torch.no_grad(), amp:
        for start in range(n_train, len(y), 65536):
            cols = X[start : start + 65536]
            preds.append(
                model({name: cols[:, j] for j, name in enumerate(names)})["y_pred"].float().flatten()
            )
    pred = torch.cat(preds).cpu().numpy()
    return float(roc_auc_score(y[n_train:].cpu().numpy(), pred)), sps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=33_000_000)
    ap.add_argument("--max-card", type=int, default=1_000_000)
    ap.add_argument("--batch-sizes", default="4096,16384")
    ap.add_argument("--modes", default="fp32,tf32,bf16")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per cell")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--auc-batch-size", type=int, default=16384)
    ap.add_argument("--budget-s", type=float, default=330, help="throughput cells stop after this")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on any device (the suite's check)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    if args.dry_run:
        args.rows, args.max_card, args.batch_sizes = 2000, 200, "64"
        args.steps, args.warmup, args.auc_batch_size, args.compile_backend = 1, 1, 256, "eager"
        if not torch.cuda.is_available():
            args.device = "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            "error: no CUDA device here; run with --dry-run for the CPU check (--device cpu runs it all on CPU)"
        )
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    fmap = feature_map(args.max_card)
    names = list(fmap.features)
    t = time.perf_counter()
    data = make_data(fmap, args.rows, device, args.seed)
    sync(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{name}: {args.rows:,} rows x {len(names)} int32 fields on the device "
        f"({data[0].numel() * 4 / 2**30:.2f} GiB, made in {time.perf_counter() - t:.1f}s); DCNv2 dim 16, "
        f"{sum(s['vocab_size'] for s in fmap.features.values()):,} embedding rows; torch {torch.__version__}",
        flush=True,
    )
    print(
        f"{'precision':9s} {'embedding':9s} {'mode':8s} {'batch':>6s} {'samples/s':>11s} {'loader':>7s} {'peak GiB':>8s}"
    )
    rows = []
    for mode in args.modes.split(","):
        for fused in (False, True):
            for compiled in (False, True):
                for bs in [int(b) for b in args.batch_sizes.split(",")]:
                    label = f"{mode:9s} {'fused' if fused else 'per_field':9s} {'compiled' if compiled else 'eager':8s} {bs:>6d}"
                    if time.perf_counter() - started > args.budget_s:
                        print(f"{label} skipped (time budget {args.budget_s:.0f}s spent)", flush=True)
                        continue
                    r = cell(fmap, data, names, args, device, mode, fused, compiled, bs)
                    rows.append((label, r))
                    print(
                        f"{label} {r['samples_s']:>11,.0f} {100 * r['loader_share']:>6.1f}% {r['peak_gib']:>8.2f}",
                        flush=True,
                    )
    if rows:
        best_label, best = max(rows, key=lambda lr: lr[1]["samples_s"])
        print(
            f"\nbest: {best_label.split()} {best['samples_s']:,.0f} samples/s "
            f"= {args.rows * 0.9 / best['samples_s']:.1f} s per epoch of the train split"
        )
        for anchor, sps in ANCHORS.items():
            print(f"  x{best['samples_s'] / sps:.2f} {anchor} ({sps:,} samples/s)")
    aucs = {}
    for mode in ("fp32", "bf16"):
        aucs[mode] = epoch_auc(fmap, data, names, args, device, mode)
        print(f"one epoch {mode}: test AUC {aucs[mode][0]:.5f} ({aucs[mode][1]:,.0f} samples/s)", flush=True)
    diff = abs(aucs["bf16"][0] - aucs["fp32"][0])
    print(f"|AUC bf16 - AUC fp32| = {diff:.2e} (target <= 1e-4); total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
