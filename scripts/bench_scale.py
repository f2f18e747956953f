"""Scale benchmark: prepare + build of a synthetic Criteo file at 1M and 10M rows (not a test).

For each size it writes a raw Kaggle-layout ``train.txt`` (TSV, no header: label, 13 integers with
missing values, 26 8-hex tokens drawn Zipf-like from fixed per-column vocabularies of 3 .. 200k
tokens, so the vocabularies do not grow with the row count), then runs, each in a fresh process:

1. ``prepare``: Kaggle train.txt -> Criteo_x4 (the stratified 8:1:1 split), streamed;
2. ``build``: the Criteo_x4_001 dataset config (log^2 bucketing, min count 10) streamed into
   ``data_block_size`` h5 blocks (``build_in_memory: false``);
3. ``build-hashed`` (with ``--hash N``): the same with C1-C26 hashed into N buckets (no vocabulary).

and reports wall time, rows per second and the process's peak RSS, split into anonymous memory
(the heap) and file-backed pages (the memory-mapped inputs, which the kernel can drop at any time).
Bounded memory shows as an anonymous peak that stays flat from 1M to 10M rows.

    python scripts/bench_scale.py --rows 1000000,10000000 --work /tmp/ctrbench_scale --hash 1000000

Real Criteo's cardinalities (vocabularies that grow with the row count) are measured by
``scripts/bench_build.py --profile criteo``; this script follows one raw download through prepare and build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 500_000


def generate(path: str, rows: int, seed: int = 2023) -> float:
    """Write ``rows`` Kaggle-layout TSV lines in chunks; returns seconds."""
    import polars as pl

    started = time.time()
    rng = np.random.default_rng(seed)
    cards = np.unique(np.exp(np.linspace(np.log(3), np.log(200_000), 26)).astype(np.int64))
    cards = np.concatenate([cards, cards[-1] + np.arange(26 - len(cards))])
    tokens = [pl.Series(np.char.mod("%08x", rng.integers(0, 2**32, int(c), dtype=np.uint64))) for c in cards]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fd:
        done = 0
        while done < rows:
            n = min(CHUNK, rows - done)
            cols = {"label": pl.Series((rng.random(n) < 0.256).astype(np.int8))}
            for i in range(13):
                values = np.floor(rng.lognormal(1.5, 1.6, n)).astype(np.int64) - (2 if i == 1 else 0)
                cols[f"I{i + 1}"] = pl.Series(values).scatter(np.flatnonzero(rng.random(n) < 0.2), None)
            for i, card in enumerate(cards):
                ids = (rng.zipf(1.15, n) - 1) % card
                col = tokens[i].gather(ids)
                cols[f"C{i + 1}"] = col.scatter(np.flatnonzero(rng.random(n) < 0.05), None)
            pl.DataFrame(cols).write_csv(fd, separator="\t", include_header=False, null_value="")
            done += n
    return time.time() - started


CHILD = r"""
import json, logging, os, resource, sys, threading, time
stage, work, block, buckets = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
peak = {"RssAnon": 0, "RssFile": 0}

def sample():  # anonymous memory (heap) vs file-backed pages (memory-mapped inputs, reclaimable)
    while True:
        with open("/proc/self/status") as fd:
            for line in fd:
                key = line.split(":")[0]
                if key in peak:
                    peak[key] = max(peak[key], int(line.split()[1]) // 1024)
        time.sleep(0.05)

threading.Thread(target=sample, daemon=True).start()
from benchmark.config import load_dataset_config  # imports (torch, fuxictr) are not timed
from benchmark.data.build import build, read_info
from benchmark.data.prepare import prepare
cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
started = time.time()
if stage == "prepare":
    result = prepare("Criteo_x4_001", os.path.join(work, "raw", "train.txt"), os.path.join(work, "data"),
                     force=True)
    rows = sum(c.rows for c in result.checks)
else:
    params = load_dataset_config(os.path.join(sys.argv[5], "config"), "Criteo_x4_001", os.path.join(work, "data"))
    params.update(build_root=os.path.join(work, "built-" + stage), data_block_size=block, build_in_memory=False)
    if buckets:
        params["hash_buckets"] = buckets
        params["feature_cols"] = [dict(c, hash_buckets=0) if str(c["name"][0]).startswith("I") else c
                                  for c in params["feature_cols"]]
    rows = sum(read_info(build(params, force=True, quiet=True))["rows"].values())
seconds = time.time() - started
peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
usage = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(0.1)
print(json.dumps({"stage": stage, "rows": rows, "seconds": round(seconds, 1),
                  "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu0, 1),
                  "rows_per_s": round(rows / seconds), "peak_rss_mb": round(peak_rss),
                  "peak_anon_mb": peak["RssAnon"], "peak_file_mb": peak["RssFile"]}))
"""


def run_stage(stage: str, work: str, block: int, buckets: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", POLARS_MAX_THREADS=str(threads), PYTHONHASHSEED="0")
    res = subprocess.run(
        [sys.executable, "-c", CHILD, stage, work, str(block), str(buckets), REPO],
        capture_output=True,
        text=True,
        env=env,
    )
    if res.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1000000,10000000", help="Comma-separated row counts.")
    ap.add_argument("--work", default="/tmp/ctrbench_scale", help="Scratch folder (several GB at 10M rows).")
    ap.add_argument("--block", type=int, default=1_000_000, help="data_block_size of the builds.")
    ap.add_argument("--hash", type=int, default=0, help="Also build with C1-C26 hashed into N buckets.")
    ap.add_argument("--threads", type=int, default=1, help="POLARS_MAX_THREADS of the measured processes.")
    ap.add_argument("--keep", action="store_true", help="Keep the scratch files.")
    ap.add_argument(
        "--reuse", action="store_true", help="Reuse a raw train.txt kept by an earlier --keep run."
    )
    args = ap.parse_args()
    results = []
    for rows in [int(r) for r in args.rows.split(",") if r]:
        work = os.path.join(args.work, f"rows_{rows}")
        raw = os.path.join(work, "raw", "train.txt")
        if args.reuse and os.path.isfile(raw):
            print(f"{rows:,} rows: reusing {raw}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
            seconds = generate(raw, rows)
            print(
                f"{rows:,} rows: generated {os.path.getsize(raw) / 2**30:.2f} GiB in {seconds:.0f}s",
                flush=True,
            )
        stages = ["prepare", "build"] + (["build-hashed"] if args.hash else [])
        for stage in stages:
            out = run_stage(
                stage, work, args.block, args.hash if stage == "build-hashed" else 0, args.threads
            )
            out["input_rows"] = rows
            results.append(out)
            print(json.dumps(out), flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        "\n| stage | input rows | rows processed | wall s | CPU s | rows/s (wall) | peak RSS (MB) | "
        "of which anonymous | of which file-backed |\n|---|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        print(
            f"| {r['stage']} | {r['input_rows']:,} | {r['rows']:,} | {r['seconds']} | {r['cpu_s']} | "
            f"{r['rows_per_s']:,} | {r['peak_rss_mb']:,} | {r['peak_anon_mb']:,} | {r['peak_file_mb']:,} |"
        )
    print(
        "\nPeak RSS counts the memory-mapped input pages polars touches (file-backed, reclaimable page "
        "cache); the anonymous peak is the heap the process really needs."
    )
    print(
        f"\ndata_block_size {args.block:,}, POLARS_MAX_THREADS {args.threads}, OMP_NUM_THREADS 1, "
        f"{os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
