"""Data-parallel training (torchrun, gloo, 2 CPU processes) gives one process's results."""

import contextlib
import json
import os
import subprocess
import sys

import pytest
import torch

from benchmark.distributed import DistContext
from tests.conftest import REPO


def test_shards_cover_the_batch_and_weights_restore_the_global_mean():
    batch = {"x": torch.arange(7.0), "label": torch.arange(7.0) % 2}
    losses, weights, rows = [], [], []
    for rank in range(3):
        shard, weight, n = DistContext(rank=rank, world_size=3).shard(batch)
        rows.append(shard["x"])
        weights.append(weight)
        losses.append(shard["x"].mean() * weight)
        assert n == 7
    assert torch.equal(torch.cat(rows), batch["x"])
    # DDP averages over ranks: mean of weighted shard means == the global batch mean
    assert float(sum(losses) / 3) == pytest.approx(float(batch["x"].mean()))
    # a rank without rows in a tiny last batch trains on one row with weight 0
    shard, weight, _ = DistContext(rank=0, world_size=2).shard({"x": torch.ones(1)})
    assert len(shard["x"]) == 1 and weight == 0.0
    shard, _, _ = DistContext(rank=0, world_size=2).shard({"x": torch.ones(1)}, train=False)
    assert len(shard["x"]) == 0


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_torchrun_two_gloo_processes_match_one_process(train, data_root, tmp_path):
    sets = ["epochs=2", "seed=5", "batch_size=200"]
    with one_thread():
        single = train("DCN_tiny", *sets)
    results = tmp_path / "runs.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "benchmark",
        "run",
        "--expid",
        "DCN_tiny",
        "--data-root",
        data_root,
        "--results",
        str(results),
        "--set",
        f"model_root={tmp_path}/ck",
        "--set",
        "verbose=0",
        *[x for s in sets for x in ("--set", s)],
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == 1  # rank 0 alone writes the record
    ddp = records[0]
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["config_hash"] == single["config_hash"]
    for split in ("valid", "test"):
        for metric in ("AUC", "logloss"):
            assert ddp[split][metric] == pytest.approx(single[split][metric], abs=1e-6)
    assert [h["AUC"] for h in ddp["history"]] == pytest.approx(
        [h["AUC"] for h in single["history"]], abs=1e-6
    )
    assert ddp["best_epoch"] == single["best_epoch"]
    assert res.stdout.count("DCN_tiny test:") == 1
