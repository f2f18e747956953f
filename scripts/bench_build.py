#!/usr/bin/env python3
"""Benchmark dataset building against the polars floor and fuxictr, on the same synthetic CSV.

Profiles (the data written, once per size, under --work-dir):

  bounded   13 numeric + 26 categorical columns drawn from fixed vocabularies of 3 .. 100k tokens
            (min_categr_count 10, StandardScaler numerics): the vocabularies stop growing with N
  criteo    the Criteo_x4 layout (Label, I1..I13, C1..C26) with Kaggle Criteo's per-column distinct
            counts scaled to N rows and a long tail of one-off values (benchmark.data.synth
            .write_criteo_profile), built with the Criteo_x4_001 config: log^2 bucketing of I1..I13,
            min_categr_count 10
  terabyte  Criteo Terabyte's layout: the train split as a folder of day files (--days, the criteo
            profile), built with the Criteo_Terabyte config (C1..C26 hashed, DLRM's log1p numerics,
            1M-row blocks), by ctrbench with each of --jobs files at a time

Methods (each in its own process; wall time excludes imports; RSS and anonymous memory are sampled over
the whole process tree, so Ray's workers count too):

  ctrbench      ctrbench's builder (--mode memory|stream|auto sets build_in_memory)
  floor         bare polars in memory: read -> value counts -> fuxictr's vocabulary rule (count >= min
                count, ordered by (-count, value), ids from 1, 0 = padding, last = OOV) -> map -> h5
  stream-floor  bare polars streaming: lazy scan -> one streaming value-count query (unpivot + group-by)
                -> vocabulary rule -> lazy map (joins) -> sink_ipc
  processor     fuxictr's FeatureProcessor fit + per-value transform without Ray (h5 output)
  fuxictr       fuxictr's own build_dataset (Ray Data path, parquet output)

Prints seconds, rows/s, peak RSS, peak anonymous memory, the ratios against the floors, and whether the
ids ctrbench wrote equal the floor's, the FeatureProcessor's and fuxictr's.

    python scripts/bench_build.py --profile criteo --rows 4800000 --methods ctrbench,floor
    python scripts/bench_build.py --profile criteo --rows 20000000 --mode stream --methods ctrbench,stream-floor
    python scripts/bench_build.py --rows 1000000 --methods ctrbench,processor,floor
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

NUM = [f"I{i}" for i in range(1, 14)]
CAT = [f"C{i}" for i in range(1, 27)]
MIN_COUNT = 10


def params_for(profile: str, csv_dir: str, out_root: str, mode: str) -> dict:
    if profile in ("criteo", "terabyte"):
        from benchmark.config import load_dataset_config

        dataset = "Criteo_x4_001" if profile == "criteo" else "Criteo_Terabyte"
        params = load_dataset_config(os.path.join(REPO, "config"), dataset, csv_dir)
        params.update(
            dataset_id="bench",
            build_root=out_root,
            **{f"{s}_data": os.path.join(csv_dir, f"{s}.csv") for s in ("train", "valid", "test")},
        )
        if profile == "terabyte":
            params["train_data"] = os.path.join(csv_dir, "train")
        else:
            params["data_block_size"] = 0
    else:
        params = {
            "dataset_id": "bench",
            "data_root": csv_dir,
            "build_root": out_root,
            "data_format": "csv",
            "min_categr_count": MIN_COUNT,
            "data_block_size": 0,
            "feature_cols": [
                {
                    "name": NUM,
                    "active": True,
                    "dtype": "float",
                    "type": "numeric",
                    "normalizer": "StandardScaler",
                },
                {"name": CAT, "active": True, "dtype": "str", "type": "categorical"},
            ],
            "label_col": {"name": "label", "dtype": "float"},
            **{f"{s}_data": os.path.join(csv_dir, f"{s}.csv") for s in ("train", "valid", "test")},
        }
    params["_profile"] = profile
    if mode != "auto":
        params["build_in_memory"] = mode == "memory"
    return params


# ---- the methods (each runs in a child process) -------------------------------------------------


def run_ctrbench(p):
    from benchmark.data.build import build

    p = {k: v for k, v in p.items() if not k.startswith("_")}
    if os.environ.get("BENCH_JOBS"):
        p["build_jobs"] = int(os.environ["BENCH_JOBS"])
    start = time.perf_counter()
    build(p, force=True, quiet=True)
    return time.perf_counter() - start


def processor_args(p) -> dict:
    """The arguments of a fuxictr ``FeatureProcessor`` (or a subclass) for the built dataset ``p``."""
    from benchmark.data.build import feature_specs, label_specs

    return dict(
        feature_cols=feature_specs(p),
        label_col=label_specs(p),
        dataset_id=p["dataset_id"],
        data_root=p["build_root"],
    )


def run_processor(p):
    import numpy as np
    from fuxictr.datasets import avazu, criteo

    from benchmark.data import h5io

    global Ref  # module level, so that fit can pickle it

    class Ref(criteo.CustomizedFeatureProcessor, avazu.CustomizedFeatureProcessor):
        pass

    Ref.__qualname__ = "Ref"
    start = time.perf_counter()
    fp = Ref(**processor_args(p))
    frames = {s: fp.preprocess(fp.read_data(p[f"{s}_data"])) for s in h5io.SPLITS}
    fp.fit(frames["train"], min_categr_count=p["min_categr_count"])
    for split, frame in frames.items():
        df = frame.collect()
        out = fp.transform({c: df[c].to_numpy() for c in df.columns})
        h5io.write_block(os.path.join(fp.data_dir, f"{split}.h5"), {k: np.asarray(v) for k, v in out.items()})
    return time.perf_counter() - start


def run_fuxictr(p):
    import logging

    logging.disable(logging.INFO)
    from fuxictr.preprocess import FeatureProcessor, build_dataset

    start = time.perf_counter()
    fp = FeatureProcessor(**processor_args(p))
    build_dataset(
        fp,
        train_data=p["train_data"],
        valid_data=p["valid_data"],
        test_data=p["test_data"],
        data_format="csv",
        min_categr_count=p["min_categr_count"],
    )
    return time.perf_counter() - start


def _floor_columns(profile: str):
    """(schema, label, categorical expressions with their fill value, numeric columns) of a profile."""
    import polars as pl

    if profile == "criteo":
        schema = {c: pl.Float64 for c in NUM} | {c: pl.String for c in CAT} | {"Label": pl.Float64}
        filled = {c: pl.col(c).fill_null(0.0) for c in NUM}
        bucket = {
            c: pl.when(e > 2).then(e.log().pow(2).floor()).otherwise(e).cast(pl.Int32)
            for c, e in filled.items()
        }
        cats = {**{c: (bucket[c], 0) for c in NUM}, **{c: (pl.col(c).fill_null(""), "") for c in CAT}}
        return schema, "Label", cats, []
    schema = {c: pl.Float64 for c in NUM} | {c: pl.String for c in CAT} | {"label": pl.Float64}
    return schema, "label", {c: (pl.col(c).fill_null(""), "") for c in CAT}, NUM


def _floor_vocab(counts, na):
    """fuxictr's vocabulary rule on (value, count): ids from 1 in (-count, value) order (by value for
    non-string tokens); the fill value gets no id."""
    import polars as pl

    keep = counts.filter((pl.col("count") >= MIN_COUNT) & (pl.col("value") != na))
    keep = (
        keep.sort(["count", "value"], descending=[True, False])
        if keep.schema["value"] == pl.String
        else keep.sort("value")
    )
    return keep.select("value", pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("id"))


def _map_joins(lf, maps):
    """Each column replaced by its id (a left join on its vocabulary; unseen -> OOV = n + 1)."""
    import polars as pl

    for c, m in maps.items():
        lf = lf.join(m.lazy().rename({"value": c, "id": c + "#"}), on=c, how="left", maintain_order="left")
        lf = lf.with_columns(pl.col(c + "#").fill_null(m.height + 1).alias(c)).drop(c + "#")
    return lf


def run_floor(p):
    """The least work that produces the same artefact in memory: read, count, map, write h5."""
    import polars as pl

    from benchmark.data import h5io

    start = time.perf_counter()
    schema, label, cats, nums = _floor_columns(p["_profile"])
    frames = {s: pl.read_csv(p[f"{s}_data"], schema_overrides=schema) for s in h5io.SPLITS}
    frames = {s: f.with_columns([e.alias(c) for c, (e, _) in cats.items()]) for s, f in frames.items()}
    train = frames["train"]
    counts = pl.collect_all(
        [
            train.lazy().select(pl.col(c).alias("value")).group_by("value").agg(pl.len().alias("count"))
            for c in cats
        ]
    )
    maps = {c: _floor_vocab(vc, na) for (c, (_, na)), vc in zip(cats.items(), counts)}
    stats = {c: (train[c].mean(), train[c].std(ddof=0)) for c in nums}
    out_dir = os.path.join(p["build_root"], p["dataset_id"])
    os.makedirs(out_dir, exist_ok=True)
    for split, df in frames.items():
        enc = _map_joins(df.lazy(), maps)
        exprs = [pl.col(c) for c in maps] + [
            ((pl.col(c) - m) / s).cast(pl.Float32) for c, (m, s) in stats.items()
        ]
        enc = enc.select(exprs + [pl.col(label).cast(pl.Float32)]).collect()
        h5io.write_block(os.path.join(out_dir, f"{split}.h5"), {c: enc[c].to_numpy() for c in enc.columns})
    return time.perf_counter() - start


def run_stream_floor(p):
    """Bare polars streaming: one streaming count query, then lazy joins sunk to Arrow IPC files."""
    import polars as pl

    start = time.perf_counter()
    schema, label, cats, nums = _floor_columns(p["_profile"])

    def scan(split):
        lf = pl.scan_csv(p[f"{split}_data"], schema_overrides=schema)
        return lf.with_columns([e.alias(c) for c, (e, _) in cats.items()])

    train = scan("train")
    strings = [pl.col(c).cast(pl.String) for c in cats]
    counts = (
        train.select(strings)
        .unpivot(variable_name="f", value_name="value")
        .drop_nulls()
        .group_by("f", "value")
        .agg(pl.len().alias("count"))
        .collect(engine="streaming")
    )
    schema_out = train.collect_schema()
    maps = {}
    for c, (_, na) in cats.items():
        part = counts.filter(pl.col("f") == c).select(pl.col("value").cast(schema_out[c]), "count")
        maps[c] = _floor_vocab(part, na)
    moments = train.select(
        [e for c in nums for e in (pl.col(c).mean().alias(c + "m"), pl.col(c).std(ddof=0).alias(c + "s"))]
    )
    moments = moments.collect(engine="streaming").row(0, named=True) if nums else {}
    out_dir = os.path.join(p["build_root"], p["dataset_id"])
    os.makedirs(out_dir, exist_ok=True)
    for split in ("train", "valid", "test"):
        lf = _map_joins(scan(split), maps)
        exprs = [pl.col(c) for c in maps] + [
            ((pl.col(c) - moments[c + "m"]) / moments[c + "s"]).cast(pl.Float32) for c in nums
        ]
        lf.select(exprs + [pl.col(label).cast(pl.Float32)]).sink_ipc(os.path.join(out_dir, f"{split}.arrow"))
    return time.perf_counter() - start


METHODS = {
    "ctrbench": run_ctrbench,
    "floor": run_floor,
    "stream-floor": run_stream_floor,
    "processor": run_processor,
    "fuxictr": run_fuxictr,
}


# ---- the driver ---------------------------------------------------------------------------------


def _tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, anonymous RSS) in bytes of a process and all its descendants, from /proc (Linux)."""
    rss = anon = 0
    stack, seen = [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as fd:
                for line in fd:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fd:
                    stack.extend(int(c) for c in fd.read().split())
        except (OSError, ValueError):
            continue
    return rss, anon


def measure(method: str, args, csv_dir: str, out_root: str, jobs: int | None = None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--csv-dir",
        csv_dir,
        "--out-root",
        out_root,
        "--profile",
        args.profile,
        "--mode",
        args.mode,
    ]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    if jobs:
        env["BENCH_JOBS"] = str(jobs)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = peak_anon = 0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        rss, anon = _tree_memory(proc.pid)
        peak, peak_anon = max(peak, rss), max(peak_anon, anon)
        time.sleep(0.1)
    output = proc.stdout.read().strip().splitlines()
    if proc.returncode != 0 or not output:
        return {"method": method, "error": f"exit {proc.returncode}: {proc.stderr.read()[-800:]}"}
    result = json.loads(output[-1])
    result.update(
        peak_rss_gb=peak / 2**30,
        peak_anon_gb=peak_anon / 2**30,
        growth_gb=(peak - result.pop("baseline")) / 2**30,
    )
    return result


def ensure_csv(profile: str, rows: int, folder: str, days: int = 1) -> str:
    if os.path.isfile(os.path.join(folder, "test.csv")):
        return folder
    started = time.time()
    print(f"writing {rows:,} {profile}-profile rows to {folder} ...", flush=True)
    if profile == "criteo":
        from benchmark.data.synth import write_criteo_profile

        write_criteo_profile(folder, rows)
    elif profile == "terabyte":
        from benchmark.data.synth import write_criteo_profile

        write_criteo_profile(folder, rows, label="label", train_files=days)
    else:
        from benchmark.data.synth import write_splits

        write_splits(
            folder,
            {"rows": rows, "n_numeric": 13, "n_categorical": 26, "max_cardinality": 100_000, "seed": 2023},
        )
    print(f"  written in {time.time() - started:.0f}s", flush=True)
    return folder


def _ids(out_root: str, method: str, split: str, columns: list[str]):
    import numpy as np
    import polars as pl

    from benchmark.data import h5io

    d = os.path.join(out_root, method, "bench")
    if method in ("fuxictr", "stream-floor"):
        path = os.path.join(d, f"{split}.parquet" if method == "fuxictr" else f"{split}.arrow")
        if not os.path.exists(path):
            return None
        frame = pl.read_parquet(path) if method == "fuxictr" else pl.read_ipc(path, memory_map=False)
        return {c: frame[c].to_numpy().astype(np.int64) for c in columns}
    files = h5io.split_files(d, split)
    if not files:
        return None
    blocks = [h5io.read_block(f, columns) for f in files]
    return {c: np.concatenate([b[c] for b in blocks]).astype(np.int64) for c in columns}


def compare_ids(out_root: str, methods: list[str], columns: list[str]) -> list[str]:
    import numpy as np

    lines = []
    for other in methods:
        if other == "ctrbench":
            continue
        same = True
        for split in ("train", "valid", "test"):
            ours, theirs = _ids(out_root, "ctrbench", split, columns), _ids(out_root, other, split, columns)
            if ours is None or theirs is None:
                same = None
                break
            same &= all(np.array_equal(ours[c], theirs[c]) for c in columns)
        lines.append(f"ids ctrbench == {other}: {'yes' if same else ('n/a' if same is None else 'NO')}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=("bounded", "criteo", "terabyte"), default="bounded")
    ap.add_argument("--days", type=int, default=4, help="terabyte profile: train files")
    ap.add_argument("--jobs", default="", help="ctrbench's build_jobs, comma-separated (each one a run)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--methods", default="ctrbench,processor,floor")
    ap.add_argument(
        "--mode",
        choices=("auto", "memory", "stream"),
        default="auto",
        help="ctrbench's build_in_memory (auto: its own estimate)",
    )
    ap.add_argument("--work-dir", default=os.path.join(REPO, "data", "bench_build"))
    ap.add_argument("--keep", action="store_true", help="keep the built outputs (the CSV is always kept)")
    ap.add_argument("--child")
    ap.add_argument("--csv-dir")
    ap.add_argument("--out-root")
    args = ap.parse_args()
    if args.child:
        import resource

        out_root = os.path.join(args.out_root, args.child)
        params = params_for(args.profile, args.csv_dir, out_root, args.mode)
        import importlib

        # each method's imports (fuxictr's: ray, sklearn, pandas) come before the baseline, not in its growth
        for module in {
            "ctrbench": ["benchmark.data.build"],
            "processor": ["benchmark.data.build"],
            "fuxictr": ["fuxictr.preprocess"],
        }.get(args.child, ["polars", "benchmark.data.h5io"]):
            importlib.import_module(module)
        with open("/proc/self/status") as fd:
            baseline = [int(line.split()[1]) * 1024 for line in fd if line.startswith("VmRSS:")][0]
        before = resource.getrusage(resource.RUSAGE_SELF)
        seconds = METHODS[args.child](params)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(json.dumps({"method": args.child, "seconds": seconds, "cpu_s": cpu, "baseline": baseline}))
        return
    methods = [m for m in args.methods.split(",") if m]
    os.makedirs(args.work_dir, exist_ok=True)
    suffix = f"_{args.days}days" if args.profile == "terabyte" else ""
    csv_dir = ensure_csv(
        args.profile, args.rows, os.path.join(args.work_dir, f"{args.profile}_{args.rows}{suffix}"), args.days
    )
    out_root = tempfile.mkdtemp(dir=args.work_dir, prefix="out-")
    try:
        results = {}
        runs = [(m, None) for m in methods]
        if args.jobs:
            runs = (
                [(m, int(j)) for m in methods for j in args.jobs.split(",")]
                if "ctrbench" in methods
                else runs
            )
        for m, jobs in runs:
            name = f"{m}[jobs {jobs}]" if jobs else m
            results[name] = r = measure(m, args, csv_dir, out_root, jobs)
            print(
                json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}),
                flush=True,
            )
        print(
            f"\nbuild of {args.rows:,} rows, profile {args.profile}, ctrbench mode {args.mode}, "
            f"{os.cpu_count()} CPUs"
        )
        print(
            "| method | seconds | CPU s | rows/s | peak RSS | peak anonymous | RSS growth over imports | "
            "time vs ctrbench |\n|---|---|---|---|---|---|---|---|"
        )
        ours = next((r for n, r in results.items() if n.startswith("ctrbench") and "seconds" in r), {})
        base = ours.get("seconds")
        for m, r in results.items():
            if "error" in r:
                print(f"| {m} | failed: {r['error'][:200]} |")
                continue
            ratio = f"{r['seconds'] / base:.2f}x" if base else "–"
            print(
                f"| {m} | {r['seconds']:.2f} | {r['cpu_s']:.1f} | {args.rows / r['seconds']:,.0f} | {r['peak_rss_gb']:.2f} GB | "
                f"{r['peak_anon_gb']:.2f} GB | {r['growth_gb']:.2f} GB | {ratio} |"
            )
        for floor in ("floor", "stream-floor"):
            if base and "seconds" in results.get(floor, {}):
                f = results[floor]
                print(
                    f"ctrbench / {floor}: time {base / f['seconds']:.2f}x (target <= 1.5x), CPU "
                    f"{ours['cpu_s'] / f['cpu_s']:.2f}x, peak RSS {ours['peak_rss_gb']:.2f} vs "
                    f"{f['peak_rss_gb']:.2f} GB, anonymous {ours['peak_anon_gb']:.2f} vs {f['peak_anon_gb']:.2f} GB, "
                    f"growth over imports {ours['growth_gb']:.2f} vs {f['growth_gb']:.2f} GB"
                )
        for m in ("fuxictr", "processor"):
            if base and "seconds" in results.get(m, {}):
                print(f"speed-up over {m}: {results[m]['seconds'] / base:.1f}x")
        columns = NUM + CAT if args.profile == "criteo" else CAT
        if args.profile == "terabyte":
            columns = CAT
        done = [
            m for m in methods if any(n.split("[")[0] == m and "seconds" in r for n, r in results.items())
        ]
        for line in compare_ids(out_root, done, columns):
            print(line)
    finally:
        if not args.keep:
            shutil.rmtree(out_root, ignore_errors=True)


if __name__ == "__main__":
    main()
