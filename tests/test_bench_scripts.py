"""The benchmark scripts run: bench_gpu's --dry-run (tiny sizes, CPU), bench_train's operator budget and
bench_sparse on small tables, so none of them rots between the runs that have the hardware."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name, *args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_bench_gpu_dry_run():
    out = script("bench_gpu.py", "--dry-run")
    cells = [
        line
        for line in out.splitlines()
        if re.match(r"^(fp32|tf32|bf16) +(per_field|fused) +(eager|compiled) ", line)
    ]
    assert len(cells) == 3 * 2 * 2  # every precision x embedding x mode at the dry run's one batch size
    assert all("skipped" not in c for c in cells)
    assert "BARS DCNv2, V100" in out and "NVIDIA DCNv2, A100" in out
    assert re.search(r"one epoch fp32: test AUC 0\.\d+", out) and re.search(
        r"one epoch bf16: test AUC 0\.\d+", out
    )


def test_bench_gpu_without_cuda_says_so():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "bench_gpu.py")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode != 0 and proc.stderr.strip().startswith("error: no CUDA device")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_bench_train_operator_budget():
    out = script(
        "bench_train.py",
        "--ops",
        "--steps",
        "2",
        "--batch-size",
        "256",
        "--max-card",
        "500",
        "--models",
        "DNN,DCNv2,DeepFM,IBNet",
    )
    ratios = [float(x) for x in re.findall(r"operators ([\d.]+) \(phased\)", out)]
    assert len(ratios) == 4 and all(r <= 0.4 for r in ratios), out


def test_bench_sparse_small_tables():
    out = script(
        "bench_sparse.py",
        "--rows",
        "300000,400000",
        "--dense-rows",
        "300000",
        "--steps",
        "1",
        "--batch-size",
        "256",
        "--optimizers",
        "dense,rowwise_adagrad",
    )
    state = re.findall(r"rowwise_adagrad .* = ([\d.]+)x the table", out)
    assert state and all(float(x) <= 1.05 for x in state)
    assert "rowwise_adagrad  step time 400,000 / 300,000 rows" in out
