#!/usr/bin/env python3
"""Benchmark dataset building on the same synthetic Criteo-like CSV (13 numeric, 26 categorical,
min_categr_count 10):

  ctrbench     ctrbench's builder (polars fit via fuxictr's FeatureProcessor, vectorised encode, h5)
  fuxictr      fuxictr's own build_dataset (Ray Data path, parquet output)
  processor    fuxictr's FeatureProcessor fit + per-value transform, without Ray (h5 output)
  floor        bare polars: read -> value counts -> map -> write (the lower bound)

Each method runs in its own process; wall time excludes imports, peak RSS is sampled over the whole
process tree (Ray starts worker processes). Prints rows/s, peak RSS, the ratios against ctrbench, and
checks that the encoded ids equal the FeatureProcessor's and fuxictr's outputs.

    python scripts/bench_build.py [--rows 1000000] [--methods ctrbench,fuxictr,processor,floor]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

NUM = [f"I{i}" for i in range(1, 14)]
CAT = [f"C{i}" for i in range(1, 27)]
MIN_COUNT = 10


def feature_cols():
    return [{"name": NUM, "active": True, "dtype": "float", "type": "numeric", "normalizer": "StandardScaler"},
            {"name": CAT, "active": True, "dtype": "str", "type": "categorical"}]


def params_for(csv_dir: str, out_root: str, dataset_id: str) -> dict:
    return {"dataset_id": dataset_id, "data_root": csv_dir, "build_root": out_root, "data_format": "csv",
            "train_data": os.path.join(csv_dir, "train.csv"), "valid_data": os.path.join(csv_dir, "valid.csv"),
            "test_data": os.path.join(csv_dir, "test.csv"), "min_categr_count": MIN_COUNT,
            "feature_cols": feature_cols(), "label_col": {"name": "label", "dtype": "float"},
            "data_block_size": 0}


# ---- the methods (each runs in a child process) -------------------------------------------------

def run_ctrbench(p):
    from benchmark.data.build import build
    start = time.perf_counter()
    build(p, force=True, quiet=True)
    return time.perf_counter() - start


def run_processor(p):
    import numpy as np
    from fuxictr.preprocess import FeatureProcessor

    from benchmark.data import h5io
    from benchmark.data.build import feature_specs, label_specs
    start = time.perf_counter()
    fp = FeatureProcessor(feature_cols=feature_specs(p), label_col=label_specs(p), dataset_id=p["dataset_id"],
                          data_root=p["build_root"])
    frames = {s: fp.preprocess(fp.read_data(p[f"{s}_data"])) for s in h5io.SPLITS}
    fp.fit(frames["train"], min_categr_count=MIN_COUNT)
    for split, frame in frames.items():
        df = frame.collect()
        out = fp.transform({c: df[c].to_numpy() for c in df.columns})
        h5io.write_block(os.path.join(fp.data_dir, f"{split}.h5"),
                         {k: np.asarray(v) for k, v in out.items()})
    return time.perf_counter() - start


def run_fuxictr(p):
    import logging
    logging.disable(logging.INFO)
    from fuxictr.preprocess import FeatureProcessor, build_dataset

    from benchmark.data.build import feature_specs, label_specs
    start = time.perf_counter()
    fp = FeatureProcessor(feature_cols=feature_specs(p), label_col=label_specs(p), dataset_id=p["dataset_id"],
                          data_root=p["build_root"])
    build_dataset(fp, train_data=p["train_data"], valid_data=p["valid_data"], test_data=p["test_data"],
                  data_format="csv", min_categr_count=MIN_COUNT)
    return time.perf_counter() - start


def run_floor(p):
    """The least work that produces the same artefact: read, count, map, write."""
    import numpy as np
    import polars as pl

    from benchmark.data import h5io
    start = time.perf_counter()
    schema = {c: pl.Float64 for c in NUM} | {c: pl.String for c in CAT}
    frames = {s: pl.read_csv(p[f"{s}_data"], schema_overrides=schema) for s in h5io.SPLITS}
    train = frames["train"]
    maps, stats = {}, {}
    for c in CAT:
        vc = train.select(pl.col(c).drop_nulls().value_counts(sort=True)).unnest(c)
        keep = vc.filter(pl.col("count") >= MIN_COUNT)[c]
        maps[c] = (keep, pl.Series(np.arange(1, len(keep) + 1)), len(keep) + 1)
    for c in NUM:
        stats[c] = (train[c].mean(), train[c].std(ddof=0))
    out_dir = os.path.join(p["build_root"], p["dataset_id"])
    os.makedirs(out_dir, exist_ok=True)
    for split, df in frames.items():
        exprs = [pl.col(c).replace_strict(k, v, default=oov, return_dtype=pl.Int32) for c, (k, v, oov) in maps.items()]
        exprs += [((pl.col(c).fill_null(0.0) - m) / s).cast(pl.Float32) for c, (m, s) in stats.items()]
        exprs.append(pl.col("label").cast(pl.Float32))
        enc = df.select(exprs)
        h5io.write_block(os.path.join(out_dir, f"{split}.h5"), {c: enc[c].to_numpy() for c in enc.columns})
    return time.perf_counter() - start


METHODS = {"ctrbench": run_ctrbench, "fuxictr": run_fuxictr, "processor": run_processor, "floor": run_floor}


# ---- the driver ---------------------------------------------------------------------------------

def _tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as fd:
                total += int(fd.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fd:
                    stack.extend(int(c) for c in fd.read().split())
        except (OSError, ValueError):
            continue
    return total


def measure(method: str, csv_dir: str, out_root: str) -> dict:
    """Run one method in a child process, sampling the RSS of its whole process tree."""
    cmd = [sys.executable, __file__, "--child", method, "--csv-dir", csv_dir, "--out-root", out_root]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.1)
    output = proc.stdout.read().strip().splitlines()
    if proc.returncode != 0 or not output:
        return {"method": method, "error": f"exit {proc.returncode}"}
    result = json.loads(output[-1])
    result["peak_rss_gb"] = peak / 2 ** 30
    return result


def ensure_csv(rows: int, folder: str) -> str:
    from benchmark.data.synth import write_splits
    if not os.path.isfile(os.path.join(folder, "test.csv")):
        print(f"writing {rows:,} synthetic Criteo-like rows to {folder} ...", flush=True)
        write_splits(folder, {"rows": rows, "n_numeric": 13, "n_categorical": 26, "max_cardinality": 100_000,
                              "seed": 2023})
    return folder


def compare_ids(out_root: str, methods: list[str]) -> list[str]:
    import numpy as np
    import polars as pl

    from benchmark.data import h5io
    lines = []
    ours_dir = os.path.join(out_root, "ctrbench", "bench")
    ours = {s: h5io.read_block(h5io.split_files(ours_dir, s)[0]) for s in h5io.SPLITS}
    for other in methods:
        if other == "ctrbench":
            continue
        d = os.path.join(out_root, other, "bench")
        same = True
        for split in h5io.SPLITS:
            if other == "fuxictr":
                path = os.path.join(d, f"{split}.parquet")
                if not os.path.exists(path):
                    same = None
                    break
                theirs = {c: pl.read_parquet(path)[c].to_numpy() for c in CAT}
            else:
                files = h5io.split_files(d, split)
                if not files:
                    same = None
                    break
                theirs = h5io.read_block(files[0], CAT)
            for c in CAT:
                same &= bool(np.array_equal(np.asarray(ours[split][c], dtype=np.int64),
                                            np.asarray(theirs[c], dtype=np.int64)))
        lines.append(f"ids ctrbench == {other}: {'yes' if same else ('n/a' if same is None else 'NO')}"
                     + (" (floor assigns its own ids)" if other == "floor" else ""))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--methods", default="ctrbench,fuxictr,processor,floor")
    ap.add_argument("--work-dir", default=os.path.join(REPO, "data", "bench_build"))
    ap.add_argument("--child")
    ap.add_argument("--csv-dir")
    ap.add_argument("--out-root")
    args = ap.parse_args()
    if args.child:
        out_root = os.path.join(args.out_root, args.child)
        seconds = METHODS[args.child](params_for(args.csv_dir, out_root, "bench"))
        print(json.dumps({"method": args.child, "seconds": seconds}))
        return
    methods = [m for m in args.methods.split(",") if m]
    csv_dir = ensure_csv(args.rows, os.path.join(args.work_dir, f"csv_{args.rows}"))
    with tempfile.TemporaryDirectory(dir=args.work_dir) as out_root:
        results = {m: measure(m, csv_dir, out_root) for m in methods}
        print(f"\nbuild of {args.rows:,} rows (13 numeric, 26 categorical, min_categr_count {MIN_COUNT}), "
              f"{os.cpu_count()} CPUs")
        print(f"{'method':<10} {'seconds':>9} {'rows/s':>12} {'peak RSS':>10} {'time vs ctrbench':>17}")
        base = results.get("ctrbench", {}).get("seconds")
        for m, r in results.items():
            if "error" in r:
                print(f"{m:<10} failed ({r['error']})")
                continue
            ratio = f"{r['seconds'] / base:.2f}x" if base else "–"
            print(f"{m:<10} {r['seconds']:>9.2f} {args.rows / r['seconds']:>12,.0f} {r['peak_rss_gb']:>8.2f}GB"
                  f" {ratio:>17}")
        if base and "floor" in results and "seconds" in results["floor"]:
            print(f"ctrbench / floor time: {base / results['floor']['seconds']:.2f}x (target <= 1.5x); peak RSS "
                  f"{results['ctrbench']['peak_rss_gb']:.2f}GB vs floor {results['floor']['peak_rss_gb']:.2f}GB")
        for m in ("fuxictr", "processor"):
            if base and "seconds" in results.get(m, {}):
                print(f"speed-up over {m}: {results[m]['seconds'] / base:.1f}x")
        for line in compare_ids(out_root, [m for m in methods if "seconds" in results[m]]):
            print(line)


if __name__ == "__main__":
    main()
