#!/usr/bin/env python3
"""Does a training step's time grow with the embedding table? Dense Adam against the row-wise optimisers.

A DNN (hidden 64) on 26 categorical fields at embedding 16, batch ``--batch-size`` (the same ids for every
table size: each field's ids are drawn from its first 10,000 rows), with the fused table grown to each of
``--rows`` total rows (the last field takes what the other 25 fields' 10,000 rows leave). Per optimiser and
size it prints the mean step time over ``--steps`` steps (after 2 warm-up steps), the ratio of the largest
size's step time to the smallest's (target for the row-wise optimisers: <= 1.2), and the bytes of the
embedding optimiser's state against the table's (target for rowwise_adagrad: <= 1.05x the weights).
Dense Adam runs at ``--dense-rows`` only (its state is twice the table and every step sweeps it whole).

    OMP_NUM_THREADS=2 python scripts/bench_sparse.py [--rows 1000000,50000000]
        [--dense-rows 1000000,10000000] [--steps 5] [--batch-size 4096]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

FIELDS, SMALL = 26, 10_000


def build(rows: int, optimizer: str, dim: int):
    from model_zoo import get_model_class
    from model_zoo.testing import feature_map_from_vocab, model_kwargs

    vocab = {f"C{i}": SMALL for i in range(FIELDS - 1)}
    vocab[f"C{FIELDS - 1}"] = rows - SMALL * (FIELDS - 1)
    fm = feature_map_from_vocab(vocab, dim)
    torch.manual_seed(0)
    return get_model_class("DNN")(
        fm,
        **model_kwargs(
            embedding_dim=dim, hidden_units=[64], embedding_optimizer=optimizer, embedding_regularizer=1e-5
        ),
    ), fm


def batch(fm, rows: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    X = {name: torch.randint(1, SMALL, (rows,), generator=g) for name in fm.features}
    X["label"] = torch.randint(0, 2, (rows,), generator=g).float()
    return X


def step(model, X):
    opts = model.optimizers()
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    model.compute_loss(model(X), model.get_labels(X)).backward()
    for opt in opts:
        opt.step()


def measure(rows: int, optimizer: str, args) -> dict:
    from model_zoo.optim import optimizer_state_bytes, sparse_tables

    t = time.perf_counter()
    model, fm = build(rows, optimizer, args.dim)
    built = time.perf_counter() - t
    model.train()
    batches = [batch(fm, args.batch_size, s) for s in range(args.steps + 2)]
    for X in batches[:2]:
        step(model, X)
    t = time.perf_counter()
    for X in batches[2:]:
        step(model, X)
    per_step = (time.perf_counter() - t) / args.steps
    table = next(p for n, p in model.named_parameters() if n.endswith("fused_weight"))
    table_bytes = table.numel() * table.element_size()
    if optimizer == "dense":
        state = sum(
            v.numel() * v.element_size()
            for v in model.optimizer.state[table].values()
            if torch.is_tensor(v) and v.dim() > 0
        )
    else:
        assert sparse_tables(model), "no sparse table"
        state = optimizer_state_bytes(model.optimizers()[-1])
    del model, batches
    gc.collect()
    return {
        "rows": rows,
        "step_ms": 1000 * per_step,
        "state_bytes": state,
        "table_bytes": table_bytes,
        "build_s": built,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1000000,50000000")
    ap.add_argument("--dense-rows", default="1000000,10000000")
    ap.add_argument("--optimizers", default="dense,sparse_adam,rowwise_adagrad")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(r) for r in args.rows.split(",")]
    dense_sizes = [int(r) for r in args.dense_rows.split(",")]
    print(
        f"DNN[64], {FIELDS} fields, dim {args.dim}, batch {args.batch_size:,}, {args.steps} timed steps; "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    for name in args.optimizers.split(","):
        results = []
        for rows in dense_sizes if name == "dense" else sizes:
            r = measure(rows, name, args)
            results.append(r)
            print(
                f"{name:16s} {rows:>12,d} rows  step {r['step_ms']:8.1f} ms  optimiser state "
                f"{r['state_bytes'] / 2**20:9.1f} MiB = {r['state_bytes'] / r['table_bytes']:.3f}x the table "
                f"({r['table_bytes'] / 2**20:,.0f} MiB; built in {r['build_s']:.1f}s)",
                flush=True,
            )
        if len(results) > 1:
            a, b = results[0], results[-1]
            print(
                f"{name:16s} step time {b['rows']:,} / {a['rows']:,} rows: x{b['step_ms'] / a['step_ms']:.2f}"
                + ("" if name == "dense" else " (target <= 1.2)"),
                flush=True,
            )


if __name__ == "__main__":
    main()
