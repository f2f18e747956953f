"""Ray-free dataset build: raw csv/parquet splits -> ``feature_map.json`` + h5 blocks.

Fitting uses fuxictr's ``FeatureProcessor`` (its polars read/preprocess expressions, normalisers and
feature-map assembly) with the vocabularies as polars frames (``processor``, ``vocab``): value counts
are group-bys, fuxictr's ordering a sort, encoding a join (``encode``), so ``feature_map.json``,
``feature_vocab.json`` and every id equal what fuxictr assigns while no Python object is made per
distinct value. Inputs whose estimated in-memory peak does not fit in the free memory are read twice
in batches (counts, then encoding) with memory bounded by the vocabularies and one batch.

Huge vocabularies can be hashed instead of counted (``hash_buckets: N`` on a categorical feature, or
at the dataset level for every categorical feature): such a column gets no vocabulary pass, its ids
are ``1 + h(value) mod N`` (0 = padding, N + 1 = missing), so memory does not grow with its
cardinality. ``h`` is FNV-1a 64 of the value's UTF-8 text with a murmur3 finaliser (``hash_function:
fnv1a``, the default) or, as DLRM does for Criteo's hex tokens, the value read as a base-16 integer
(``hash_function: hex``). Columns without hashing keep fuxictr's ids exactly.

A build is keyed by a hash of everything that affects it (feature specs, thresholds, splits, the raw
files' sizes and mtimes). It is written to a temporary directory and renamed into place at the end,
so an interrupted build is never taken as complete; an unchanged config reuses the existing build.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import polars as pl

from ..errors import CTRBenchError
from ..util import json_hash, process_alive
from . import h5io
from .encode import Encoder
from .processor import Processor

BUILD_FORMAT = 1
INFO_FILE = "build_info.json"
# Raw inputs up to this many bytes are read once into memory; larger ones stream in two passes.
IN_MEMORY_BYTES = 2 * 1024**3  # input held in memory when the free memory cannot be read
STREAM_CHUNK_ROWS = 1_000_000  # rows per batch of a streamed build (about 0.5 GB of Criteo-like columns)

log = logging.getLogger("ctrbench")


# --------------------------------------------------------------------------------------------------
# Config checks and the build key


def feature_specs(params: dict) -> list[dict]:
    """Expanded feature specs (one per name) with fuxictr's implicit defaults made explicit."""
    cols = params.get("feature_cols")
    where = params.get("_dataset_config_file", "the dataset config")
    if not cols or not isinstance(cols, list):
        raise CTRBenchError(f"dataset '{params.get('dataset_id')}' in {where} has no feature_cols list")
    out = []
    for col in cols:
        if not isinstance(col, dict) or "name" not in col or "type" not in col:
            raise CTRBenchError(f"each feature_cols entry in {where} needs 'name' and 'type' (got {col!r})")
        names = col["name"] if isinstance(col["name"], list) else [col["name"]]
        for name in names:
            spec = dict(col, name=str(name))
            spec.setdefault("active", True)
            spec.setdefault(
                "dtype", "str" if spec["type"] in ("categorical", "sequence", "meta") else "float"
            )
            if spec["type"] not in ("categorical", "numeric", "sequence", "meta", "embedding"):
                raise CTRBenchError(
                    f"feature '{name}' in {where}: type '{spec['type']}' is not one of "
                    f"categorical, numeric, sequence, meta, embedding"
                )
            _hash_spec(spec, params, where)
            out.append(spec)
    return out


HASH_FUNCTIONS = ("fnv1a", "hex")


def _hash_spec(spec: dict, params: dict, where: str) -> None:
    """Resolve ``hash_buckets``/``hash_function`` (per feature, else the dataset-level defaults)."""
    name = spec["name"]
    if spec["type"] == "categorical" and "hash_buckets" not in spec and params.get("hash_buckets"):
        spec["hash_buckets"] = params["hash_buckets"]
    buckets = spec.get("hash_buckets")
    if not buckets:
        spec.pop("hash_buckets", None)
        spec.pop("hash_function", None)
        return
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise CTRBenchError(
            f"feature '{name}' in {where}: hash_buckets={buckets!r} must be a positive "
            f"integer (or 0 for no hashing)"
        )
    if spec["type"] != "categorical":
        raise CTRBenchError(
            f"feature '{name}' in {where}: hash_buckets applies to categorical features "
            f"only, not {spec['type']}; remove it from that entry"
        )
    if "share_embedding" in spec or "category_processor" in spec or "pretrained_emb" in spec:
        raise CTRBenchError(
            f"feature '{name}' in {where}: hash_buckets cannot be combined with "
            f"share_embedding, category_processor or pretrained_emb; drop one of them"
        )
    function = spec.get("hash_function", params.get("hash_function", "fnv1a"))
    if function not in HASH_FUNCTIONS:
        raise CTRBenchError(
            f"feature '{name}' in {where}: hash_function '{function}' is not one of "
            f"{', '.join(HASH_FUNCTIONS)}"
        )
    spec["hash_function"] = function


def label_specs(params: dict) -> list[dict]:
    label = params.get("label_col")
    where = params.get("_dataset_config_file", "the dataset config")
    if not label:
        raise CTRBenchError(
            f"dataset '{params.get('dataset_id')}' in {where} has no label_col "
            f"(e.g. label_col: {{name: label, dtype: float}})"
        )
    labels = label if isinstance(label, list) else [label]
    # an empty label is an error, not a 0: fuxictr's fill stays off unless the config asks for one
    return [dict(lb, dtype=lb.get("dtype", "float"), fill_na=lb.get("fill_na")) for lb in labels]


def raw_paths(params: dict) -> dict[str, str | None]:
    return {split: params.get(f"{split}_data") for split in h5io.SPLITS}


def _source_files(path: str, data_format: str) -> list[str]:
    if os.path.isdir(path):
        import glob

        return sorted(glob.glob(os.path.join(path, f"*.{data_format}")))
    return [path] if os.path.isfile(path) else []


def missing_data_message(params: dict, missing: list[str]) -> str:
    source = params.get("download") or params.get("source")
    hint = f"get it from {source}" if source else "download it (see 'ctrbench data list')"
    return (
        f"dataset '{params['dataset_id']}' is missing {', '.join(missing)}; {hint} "
        f"and place it there, or point --data-root at the folder holding it (relative paths resolve "
        f"against {params.get('_paths_base', 'the folder above the dataset config file')}, the folder "
        f"above the dataset config's; a split path that starts with data_root is not joined onto it again)"
    )


# the values a missing key stands for, so that a config that spells a default out and one that leaves
# it out (``data build`` and ``run`` resolve them differently) share one build
KEY_DEFAULTS = {
    "min_categr_count": 1,
    "data_format": "csv",
    "sep": ",",
    "n_rows": None,
    "valid_size": 0,
    "test_size": 0,
    "split_type": "sequential",
    "split_seed": None,
    "data_block_size": 0,
    "group_id": None,
    "synthetic": None,
}


def build_key(params: dict) -> str:
    """md5 of everything that changes the built files: the effective feature specs, the build settings
    (defaults filled in) and the raw files' sizes and mtimes."""
    payload = {
        k: params.get(k) if params.get(k) is not None else default for k, default in KEY_DEFAULTS.items()
    }
    payload["data_block_size"] = int(payload["data_block_size"] or 0)
    payload["dataset_id"] = params.get("dataset_id")
    payload["feature_cols"] = feature_specs(params)
    payload["label_col"] = label_specs(params)
    files = {}
    for split, path in raw_paths(params).items():
        if path:
            for f in _source_files(path, params.get("data_format", "csv")):
                st = os.stat(f)
                files[f"{split}:{os.path.basename(f)}"] = [st.st_size, int(st.st_mtime)]
    payload["files"] = files
    payload["format"] = BUILD_FORMAT
    return json_hash(payload)


def data_dir(params: dict) -> str:
    """``<build_root>/<dataset_id>``; with the default build_root (data_root) and raw csv/parquet splits
    inside that folder (FuxiCTR's ``data/<dataset_id>/train.csv``), ``<data_root>/built/<dataset_id>``
    instead, since a build replaces its whole folder."""
    target = os.path.join(params["build_root"], params["dataset_id"])
    if params.get("_build_root_default") and params.get("data_format", "csv") != "h5":
        inside = [
            p
            for p in raw_paths(params).values()
            if p and os.path.abspath(p).startswith(os.path.abspath(target) + os.sep)
        ]
        if inside:
            return os.path.join(params["build_root"], "built", params["dataset_id"])
    return target


def read_info(directory: str) -> dict | None:
    path = os.path.join(directory, INFO_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as fd:
            return json.load(fd)
    except (OSError, json.JSONDecodeError):
        return None


MARKER_FILE = ".ctrbench_build"  # written into every ctrbench build, beside build_info.json
# builds up to this size have their checksums verified on every reuse (sizes are always checked)
VERIFY_ON_REUSE_BYTES = 256 * 1024**2


def is_legacy_dir(directory: str) -> bool:
    """A fuxictr-2.0 style directory: feature_map.json + train.h5 (+ valid/test) and nothing of
    ctrbench's own (no build_info.json, no build marker, no block folders)."""
    return (
        os.path.isfile(os.path.join(directory, "feature_map.json"))
        and os.path.isfile(os.path.join(directory, "train.h5"))
        and not os.path.exists(os.path.join(directory, INFO_FILE))
        and not os.path.exists(os.path.join(directory, MARKER_FILE))
    )


def _checksum(path: str) -> str:
    """CRC-32 of the file (corruption, not tampering: several times faster than a cryptographic hash)."""
    crc = 0
    with open(path, "rb") as fd:
        for chunk in iter(lambda: fd.read(1 << 22), b""):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def manifest(directory: str) -> dict[str, dict]:
    """``{relative path: {size, crc32}}`` of the files a build wrote (all but build_info.json)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if rel in (INFO_FILE, MARKER_FILE):
                continue
            files[rel] = {"size": os.path.getsize(path), "crc32": _checksum(path)}
    return files


def damaged_files(directory: str, info: dict, checksums: bool) -> list[str]:
    """What differs from the manifest in build_info.json: missing files, other sizes, and (with
    ``checksums``) other contents. A build written before manifests existed has nothing to compare."""
    problems = []
    for rel, expected in sorted((info.get("files") or {}).items()):
        path = os.path.join(directory, rel)
        if not os.path.isfile(path):
            problems.append(f"{path} is missing")
        elif os.path.getsize(path) != expected["size"]:
            problems.append(
                f"{path} has {os.path.getsize(path):,} bytes, not {expected['size']:,} (truncated or "
                f"overwritten)"
            )
        elif checksums and _checksum(path) != expected.get("crc32"):
            problems.append(f"{path} has changed contents (checksum differs)")
    return problems


def verify_build(params: dict) -> tuple[str, list[str]]:
    """``ctrbench data verify-build``: the built directory and what in it is damaged (every checksum)."""
    target = data_dir(params)
    info = read_info(target)
    if info is None:
        raise CTRBenchError(
            f"{target} holds no ctrbench build (no {INFO_FILE}); build it with "
            f"'ctrbench data build {params['dataset_id']}'"
        )
    if not info.get("files"):
        raise CTRBenchError(
            f"{target} was built before builds recorded their files; rebuild it with "
            f"'ctrbench data build {params['dataset_id']} --force' to verify it later"
        )
    return target, damaged_files(target, info, checksums=True)

    return True


def remove_stale_builds(build_root: str, dataset_id: str) -> list[str]:
    """Temporary folders of builds whose process is gone (killed): ``.<id>.building-PID`` and
    ``<id>.old-PID``. Returns what was removed."""
    removed = []
    if not os.path.isdir(build_root):
        return removed
    for name in os.listdir(build_root):
        for prefix in (f".{dataset_id}.building-", f"{dataset_id}.old-"):
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                if not process_alive(int(name[len(prefix) :])):
                    shutil.rmtree(os.path.join(build_root, name), ignore_errors=True)
                    removed.append(name)
    return removed


# --------------------------------------------------------------------------------------------------
# Reading and splitting


def _scan(path: str, params: dict, dtypes: dict) -> pl.LazyFrame:
    fmt = params.get("data_format", "csv")
    files = _source_files(path, fmt)
    if not files:
        raise CTRBenchError(missing_data_message(params, [path]))
    frames = []
    for f in files:
        if fmt == "csv":
            header = _csv_header(f, params.get("sep", ","))
            overrides = {k: v for k, v in dtypes.items() if k in header}
            frames.append(
                pl.scan_csv(
                    f,
                    separator=params.get("sep", ","),
                    schema_overrides=overrides,
                    low_memory=False,
                    n_rows=params.get("n_rows"),
                    null_values=None,
                )
            )
        elif fmt == "parquet":
            frames.append(pl.scan_parquet(f, low_memory=False, n_rows=params.get("n_rows")))
        else:
            raise CTRBenchError(
                f"data_format '{fmt}' of dataset '{params['dataset_id']}' cannot be built; "
                f"use csv or parquet for raw splits (h5 for an already-built fuxictr-2.0 directory)"
            )
    return pl.concat(frames) if len(frames) > 1 else frames[0]


COMPRESSED = {
    b"\x1f\x8b": ("gzip", "gunzip -k"),
    b"BZh": ("bzip2", "bunzip2 -k"),
    b"\xfd7zXZ": ("xz", "unxz -k"),
    b"PK\x03\x04": ("zip", "unzip"),
    b"\x28\xb5\x2f\xfd": ("zstd", "unzstd"),
}


def _csv_header(path: str, sep: str) -> list[str]:
    """Column names from the first line (polars' n_rows=0 read still scans the file)."""
    try:
        with open(path, "rb") as fd:
            head = fd.read(8)
    except OSError as exc:
        raise CTRBenchError(f"cannot read {path}: {exc.strerror}; check its permissions")
    for magic, (kind, command) in COMPRESSED.items():
        if head.startswith(magic):
            raise CTRBenchError(
                f"{path} is {kind}-compressed, not plain csv; decompress it first "
                f"({command} {os.path.basename(path)}) and point the config at the result"
            )
    try:
        with open(path, "r", encoding="utf-8", newline="") as fd:
            line = fd.readline()
    except UnicodeDecodeError:
        raise CTRBenchError(
            f"{path}: line 1 (the header) is not valid UTF-8; re-encode the file as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8)"
        )
    if not line.strip():
        raise CTRBenchError(f"{path} is empty; re-download or re-create it")
    return [name.strip().strip('"') for name in line.rstrip("\r\n").split(sep)]


_PARSE = re.compile(r"could not parse `(?P<value>.*?)` as dtype `(?P<dtype>.*?)` at column '(?P<column>.*?)'")


def _all_sources(params: dict) -> list[str]:
    fmt = params.get("data_format", "csv")
    return [f for path in raw_paths(params).values() if path for f in _source_files(path, fmt)]


def read_error(exc: Exception, params: dict, dtypes: dict) -> CTRBenchError | None:
    """The one-line error for a raw file polars could not parse: file, line, column and value (found
    again with a tolerant read of the column), or the first line that is not UTF-8. None when the
    failure is not one of these."""
    message = str(exc)
    sep = params.get("sep", ",")
    match = _PARSE.search(message)
    if match:
        column, value = match["column"], match["value"]
        dtype = dtypes.get(column, pl.Float64)
        kind = "number" if dtype in (pl.Float64, pl.Int64) else str(dtype)
        for path in _all_sources(params):
            if params.get("data_format", "csv") != "csv" or column not in _csv_header(path, sep):
                continue
            text = pl.scan_csv(path, separator=sep, infer_schema=False, null_values=None).with_row_index(
                "__row"
            )
            bad = text.filter(
                pl.col(column).is_not_null() & pl.col(column).cast(dtype, strict=False).is_null()
            )
            hit = bad.select("__row", column).head(1).collect()
            if hit.height:
                row, found = hit.row(0)
                return CTRBenchError(
                    f"{path}: line {row + 2}, column '{column}' holds {found!r}, not a {kind}; "
                    f"fix or drop that row, or declare the column dtype: str in feature_cols"
                )
        return CTRBenchError(
            f"a raw file of dataset '{params['dataset_id']}' has {value!r} in column "
            f"'{column}', not a {kind}; fix or drop those rows"
        )
    if "utf-8" in message.lower():
        for path in _all_sources(params):
            with open(path, "rb") as fd:
                for number, line in enumerate(fd, 1):
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError as err:
                        return CTRBenchError(
                            f"{path}: line {number} is not valid UTF-8 (byte "
                            f"{line[err.start : err.start + 1]!r} at position {err.start + 1}); "
                            f"re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                        )
    return None


def _split_hash(seed: int) -> pl.Expr:
    """A deterministic per-row uniform number in [0, 1) from the row index (version-stable)."""
    m = 2**32
    h = ((pl.col("__row") % m) * 2654435761 + (seed % m) * 2246822519) % m
    h = h.xor(h // 65536)
    h = (h * 3266489917) % m
    h = h.xor(h // 8192)
    return h.cast(pl.Float64) / m


def _split_frames(train: pl.LazyFrame, params: dict) -> dict[str, pl.LazyFrame]:
    """Carve valid/test out of train when valid_data/test_data are not given (fuxictr's valid_size)."""
    valid_size, test_size = params.get("valid_size", 0) or 0, params.get("test_size", 0) or 0
    indexed = train.with_row_index("__row").with_columns(pl.col("__row").cast(pl.UInt64))
    n = None
    if valid_size >= 1 or test_size >= 1 or params.get("split_type", "sequential") == "sequential":
        n = indexed.select(pl.len()).collect().item()
    if params.get("split_type", "sequential") == "random":
        u = _split_hash(int(params.get("split_seed", params.get("seed", 2023))))
        vf = valid_size / n if valid_size >= 1 else valid_size
        tf = test_size / n if test_size >= 1 else test_size
        indexed = indexed.with_columns(u.alias("__u"))
        parts = {
            "test": indexed.filter(pl.col("__u") < tf),
            "valid": indexed.filter((pl.col("__u") >= tf) & (pl.col("__u") < tf + vf)),
            "train": indexed.filter(pl.col("__u") >= tf + vf),
        }
    else:
        n_test = int(test_size if test_size >= 1 else round(n * test_size))
        n_valid = int(valid_size if valid_size >= 1 else round(n * valid_size))
        n_train = n - n_valid - n_test
        parts = {
            "train": indexed.filter(pl.col("__row") < n_train),
            "valid": indexed.filter((pl.col("__row") >= n_train) & (pl.col("__row") < n_train + n_valid)),
            "test": indexed.filter(pl.col("__row") >= n_train + n_valid),
        }
    drop = [c for c in ("__row", "__u")]
    return {k: v.drop(drop, strict=False) for k, v in parts.items()}


def _nan_to_null(frame: pl.LazyFrame, specs: list[dict]) -> pl.LazyFrame:
    """Literal ``NaN`` in a numeric column is a missing value (fuxictr leaves it as NaN)."""
    schema = frame.collect_schema()
    exprs = [
        pl.col(s["name"]).fill_nan(None)
        for s in specs
        if s["name"] in schema and schema[s["name"]] in (pl.Float32, pl.Float64)
    ]
    return frame.with_columns(exprs) if exprs else frame


# --------------------------------------------------------------------------------------------------
# Validation hooks


def _check_labels(
    arrays: dict[str, np.ndarray], labels: list[str], where: str, task: str, first_row: int | None = None
) -> dict[str, set]:
    """Binary labels are 0 or 1: an empty field, NaN or another value is named with its line. Returns the
    classes each label column holds (for the eval-split check); other tasks are not checked."""
    if task != "binary_classification":
        return {}
    classes = {}
    for lb in labels:
        y = arrays[lb]
        values = np.unique(y)  # NaN sorts last and stays in
        if not np.isin(values, (0.0, 1.0)).all():
            index = int(np.flatnonzero(~np.isin(y, (0.0, 1.0)))[0])
            value = float(y[index])
            at = f" line {first_row + index + 2}" if first_row is not None else ""
            shown = "an empty (or NaN) value" if np.isnan(value) else f"value {value:g}"
            raise CTRBenchError(
                f"label column '{lb}' in {where}{at} has {shown}, not 0 or 1; fix or drop "
                f"that row, binarise the label (e.g. rating >= 4) or set task: regression"
            )
        classes[lb] = set(values.tolist())
    return classes


def _check_eval_split(arrays_seen: dict[str, set], split: str, where: str, rows: int, task: str) -> None:
    """valid/test need rows of both classes: AUC is undefined otherwise (sklearn fails after an epoch)."""
    if rows == 0:
        raise CTRBenchError(
            f"{where} has no rows (the {split} split); give it data rows or drop "
            f"{split}_data from the dataset config"
        )
    if task != "binary_classification" or split == "train":
        return
    for lb, seen in arrays_seen.items():
        if len(seen) < 2:
            only = int(next(iter(seen))) if seen else None
            raise CTRBenchError(
                f"the {split} split ({where}) has {rows:,} row(s), all with {lb} = {only}; AUC needs "
                f"rows of both classes there: use a larger or stratified {split} split"
            )


def _check_columns(frame: pl.LazyFrame, specs: list[dict], labels: list[dict], where: str) -> None:
    names = frame.collect_schema().names()
    derived = {s["name"] for s in specs if s.get("preprocess")}
    for lb in labels:
        if lb["name"] not in names:
            raise CTRBenchError(
                f"label column '{lb['name']}' is not in {where} (columns: "
                f"{', '.join(names[:12])}{'...' if len(names) > 12 else ''}); fix label_col"
            )
    for s in specs:
        if s.get("active", True) and s["name"] not in names and s["name"] not in derived:
            raise CTRBenchError(
                f"feature column '{s['name']}' is not in {where}; remove it from "
                f"feature_cols, mark it active: False, or fix the file's header"
            )


# --------------------------------------------------------------------------------------------------
# The build


def _split_sources(params: dict, specs, labels, dtypes) -> dict[str, pl.LazyFrame]:
    paths = raw_paths(params)  # build() has checked that every named source exists
    if not paths["train"]:
        raise CTRBenchError(
            f"dataset '{params['dataset_id']}' ({params.get('_dataset_config_file')}) has no train_data"
        )
    frames = {s: _scan(p, params, dtypes) for s, p in paths.items() if p}
    if ("valid" not in frames and params.get("valid_size")) or (
        "test" not in frames and params.get("test_size")
    ):
        carved = _split_frames(frames["train"], params)
        frames["train"] = carved["train"]
        for split in ("valid", "test"):
            if split not in frames and params.get(f"{split}_size"):
                frames[split] = carved[split]
    for split, frame in frames.items():
        where = paths[split] if paths.get(split) else f"{paths['train']} ({split} part)"
        _check_columns(frame, specs, labels, where)
    return frames


def _file_units(params: dict, dtypes: dict) -> dict[str, list[tuple[str, pl.LazyFrame]]]:
    """``(file, frame)`` of each file of the splits given as a folder of several files (Criteo Terabyte's
    days): their files are counted and encoded in parallel, each into its own blocks."""
    fmt = params.get("data_format", "csv")
    units = {}
    for split, path in raw_paths(params).items():
        files = _source_files(path, fmt) if path else []
        if len(files) > 1:
            units[split] = [(f, _scan(f, params, dtypes)) for f in files]
    return units


def build_jobs(params: dict) -> int:
    """``build_jobs`` (``data build --jobs``): files encoded at once; default the machine's cores."""
    jobs = params.get("build_jobs")
    if jobs in (None, 0):
        return max(1, os.cpu_count() or 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise CTRBenchError(
            f"build_jobs={jobs!r} in {params.get('_dataset_config_file', 'the dataset config')} "
            f"must be a positive integer (files built at once)"
        )
    return jobs


def _chunks(frame: pl.LazyFrame, in_memory: bool) -> Iterator[pl.DataFrame]:
    if in_memory:
        yield frame.collect()
        return
    for batch in frame.collect_batches(chunk_size=STREAM_CHUNK_ROWS, maintain_order=True):
        if batch.height:
            yield batch


class _H5Appender:
    """One h5 file of growing datasets (the same one-dataset-per-column layout), filled chunk by chunk."""

    def __init__(self, path: str):
        import h5py

        self.hf = h5py.File(path, "w")
        self.rows = 0

    def append(self, chunk: dict[str, np.ndarray]) -> None:
        n = len(next(iter(chunk.values())))
        for name, array in chunk.items():
            if name not in self.hf:
                self.hf.create_dataset(
                    name,
                    data=array,
                    maxshape=(None,) + array.shape[1:],
                    chunks=(min(max(n, 1), 65536),) + array.shape[1:],
                )
            else:
                self.hf[name].resize(self.rows + n, axis=0)
                self.hf[name][self.rows :] = array
        self.rows += n

    def close(self) -> None:
        self.hf.close()


def _stream_split(
    out_dir: str, split: str, chunks: Iterator[dict[str, np.ndarray]], block_size: int, where: str
) -> int:
    """Append chunks to ``split.h5`` (block_size 0) or to ``split/part_NNNNN.h5`` blocks of block_size
    rows, so memory holds one chunk at a time whatever the split's size."""
    if block_size > 0:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    writer, index, total = None, 0, 0
    try:
        for chunk in chunks:
            n = len(next(iter(chunk.values())))
            start = 0
            while start < n:
                if writer is None:
                    path = (
                        os.path.join(out_dir, split, f"part_{index:05d}.h5")
                        if block_size > 0
                        else os.path.join(out_dir, f"{split}.h5")
                    )
                    writer, index = _H5Appender(path), index + 1
                take = n - start if block_size <= 0 else min(n - start, block_size - writer.rows)
                writer.append({k: v[start : start + take] for k, v in chunk.items()})
                start += take
                total += take
                if block_size > 0 and writer.rows == block_size:
                    writer.close()
                    writer = None
    finally:
        if writer is not None:
            writer.close()
    if total == 0:
        raise CTRBenchError(f"{where} has no rows")
    return total


def _write_split(
    out_dir: str,
    split: str,
    chunks: Iterator[dict[str, np.ndarray]],
    block_size: int,
    where: str,
    streaming: bool = False,
) -> int:
    """Write encoded chunks as ``split.h5`` (block_size 0) or ``split/part_NNNNN.h5`` blocks.
    A streamed build appends chunk by chunk (``_stream_split``), so no split or block is held in memory."""
    if streaming:
        return _stream_split(out_dir, split, chunks, block_size, where)
    if block_size <= 0:
        parts = list(chunks)
        if not parts:
            raise CTRBenchError(f"{where} has no rows")
        columns = (
            parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        )
        del parts
        h5io.write_block(os.path.join(out_dir, f"{split}.h5"), columns)
        return len(next(iter(columns.values())))
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    pending: list[dict[str, np.ndarray]] = []
    pending_rows, total, index = 0, 0, 0

    def flush(rows: int):
        nonlocal pending, pending_rows, index
        columns = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
        head = {k: v[:rows] for k, v in columns.items()}
        h5io.write_block(os.path.join(out_dir, split, f"part_{index:05d}.h5"), head)
        index += 1
        rest = {k: v[rows:] for k, v in columns.items()}
        pending_rows -= rows
        pending = [rest] if pending_rows else []

    for chunk in chunks:
        n = len(next(iter(chunk.values())))
        pending.append(chunk)
        pending_rows += n
        total += n
        while pending_rows >= block_size:
            flush(block_size)
    if pending_rows:
        flush(pending_rows)
    if total == 0:
        raise CTRBenchError(f"{where} has no rows")
    return total


def build(params: dict, force: bool = False, quiet: bool = False) -> str:
    """Build (or reuse) the dataset of ``params``; returns the built directory."""
    target = data_dir(params)
    if params.get("data_format") == "h5" or is_legacy_dir(target):
        if not os.path.isfile(os.path.join(target, "feature_map.json")) or not h5io.split_files(
            target, "train"
        ):
            raise CTRBenchError(
                f"data_format h5 expects a built directory {target} with feature_map.json "
                f"and train.h5; build it or fix build_root/data_root"
            )
        if not quiet:
            log.info("Using h5 directory %s", target)
        return target
    if params.get("synthetic") and not os.path.exists(params["train_data"]):
        from .synth import write_from_params

        write_from_params(params)
    fmt = params.get("data_format", "csv")
    for split, path in raw_paths(params).items():
        if path and os.path.isdir(path) and not _source_files(path, fmt):
            raise CTRBenchError(
                f"{split}_data {path} is a directory with no *.{fmt} files in it; point "
                f"{split}_data at a .{fmt} file or at a folder of them"
            )
    missing = [p for p in raw_paths(params).values() if p and not _source_files(p, fmt)]
    if missing:  # named before anything else is said about the paths
        raise CTRBenchError(missing_data_message(params, missing))
    for split, path in raw_paths(params).items():
        if path and os.path.abspath(path).startswith(os.path.abspath(target) + os.sep):
            raise CTRBenchError(
                f"{split}_data {path} lies inside the build directory {target}, which a "
                f"rebuild replaces; move the raw files elsewhere or change build_root"
            )
    key = build_key(params)
    info = read_info(target)
    if info and info.get("key") == key and not force:
        size = sum(f["size"] for f in (info.get("files") or {}).values())
        problems = damaged_files(target, info, checksums=size <= VERIFY_ON_REUSE_BYTES)
        if not problems:
            if not quiet:
                log.info("Reusing built data in %s (config unchanged)", target)
            return target
        log.warning("Rebuilding %s: %s", target, "; ".join(problems))
    elif os.path.isdir(target) and info is None and not is_legacy_dir(target) and os.listdir(target):
        log.warning("Rebuilding %s: its %s is missing", target, INFO_FILE)
    started = time.time()
    specs, labels = feature_specs(params), label_specs(params)
    dtypes = {}
    for spec in specs + labels:
        dtypes[spec["name"]] = {"str": pl.String, "float": pl.Float64, "int": pl.Int64}.get(
            str(spec["dtype"]), pl.String
        )
    frames = _split_sources(params, specs, labels, dtypes)
    parent = os.path.dirname(target)  # build_root, or build_root/built (data_dir)
    os.makedirs(parent, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise CTRBenchError(
            f"cannot write built data to {parent}; set build_root in "
            f"{params.get('_dataset_config_file')} or pass --build-root"
        )
    for name in remove_stale_builds(parent, params["dataset_id"]):
        log.info("Removed %s, left by a build that was killed", os.path.join(parent, name))
    tmp = os.path.join(parent, f".{params['dataset_id']}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        try:
            rows = _build_into(tmp, params, specs, labels, frames, dtypes)
        except pl.exceptions.ComputeError as exc:  # a raw file polars could not read: say where
            error = read_error(exc, params, dtypes)
            if error is None:
                raise
            raise error from exc
        with open(os.path.join(tmp, MARKER_FILE), "w") as fd:
            fd.write(f"{params['dataset_id']}\n")
        with open(os.path.join(tmp, INFO_FILE), "w") as fd:
            json.dump(
                {
                    "key": key,
                    "dataset_id": params["dataset_id"],
                    "rows": rows,
                    "data_block_size": params.get("data_block_size", 0),
                    "seconds": round(time.time() - started, 3),
                    "format": BUILD_FORMAT,
                    "files": manifest(tmp),
                },
                fd,
                indent=2,
            )
        old = None
        if os.path.exists(target):
            old = f"{target}.old-{os.getpid()}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        log.info(
            "Built %s in %.1fs: %s",
            target,
            time.time() - started,
            ", ".join(f"{k} {v:,} rows" for k, v in rows.items()),
        )
    return target


def _raw_bytes(params: dict) -> int:
    total = 0
    for path in raw_paths(params).values():
        if path:
            total += sum(os.path.getsize(f) for f in _source_files(path, params.get("data_format", "csv")))
    return total


# peak memory of an in-memory build per byte of raw input (csv: the parsed splits, their encoded copy
# and the value counts; measured 4-5x on Criteo-shaped csv), and the share of free memory it may take
MEMORY_PER_RAW_BYTE = {"csv": 5.0, "parquet": 12.0}
MEMORY_SHARE = 0.6


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), or None where there is none."""
    try:
        with open("/proc/meminfo") as fd:
            for line in fd:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def choose_in_memory(params: dict) -> tuple[bool, str]:
    """In memory when the build's estimated peak fits in a share of the free memory, else streamed;
    ``build_in_memory`` forces either. Returns the choice and the reason (logged)."""
    forced = params.get("build_in_memory")
    if forced is not None:
        return bool(forced), f"build_in_memory: {forced}"
    raw = _raw_bytes(params)
    estimate = raw * MEMORY_PER_RAW_BYTE.get(params.get("data_format", "csv"), 5.0)
    free = available_memory()
    budget = free * MEMORY_SHARE if free else IN_MEMORY_BYTES * MEMORY_PER_RAW_BYTE["csv"]
    fits = estimate <= budget
    return fits, (
        f"estimated peak {estimate / 2**30:.1f} GiB for {raw / 2**30:.2f} GiB of input "
        f"{'fits' if fits else 'does not fit'} in {budget / 2**30:.1f} GiB "
        f"({MEMORY_SHARE:.0%} of the free memory)"
    )


def _build_into(out_dir: str, params: dict, specs, labels, frames, dtypes) -> dict[str, int]:
    where = params.get("_dataset_config_file", "the dataset config")
    processor = Processor(
        feature_cols=specs,
        label_col=labels,
        dataset_id=params["dataset_id"],
        data_root=params["build_root"],
        group_id=params.get("group_id"),
    )
    processor.min_count = params.get("min_categr_count", 1)
    processor.where = f"dataset '{params['dataset_id']}' ({where})"
    processor.train_source = raw_paths(params)["train"]
    processor.data_dir = out_dir
    processor.feature_map.data_dir = out_dir
    processor.json_file = os.path.join(out_dir, "feature_map.json")
    processor.pickle_file = os.path.join(out_dir, "feature_processor.pkl")
    processor.vocab_file = os.path.join(out_dir, "feature_vocab.json")
    in_memory, why = choose_in_memory(params)
    log.info("Building %s %s: %s", params["dataset_id"], "in memory" if in_memory else "streamed", why)
    processor.streaming = not in_memory
    processor.chunk_rows = STREAM_CHUNK_ROWS
    prepared = {s: processor.preprocess(_nan_to_null(f, specs)) for s, f in frames.items()}
    units = {}
    if in_memory:
        # train is read once for the statistics and its encoding; valid and test are read when encoded,
        # so that memory holds one split (and its encoded copy) at a time
        prepared["train"] = prepared["train"].collect().lazy()
    else:
        units = {
            s: [(path, processor.preprocess(_nan_to_null(f, specs))) for path, f in files]
            for s, files in _file_units(params, dtypes).items()
            if s in prepared
        }
    jobs = build_jobs(params)
    processor.count_units = [f for _, f in units["train"]] if "train" in units else None
    processor.jobs = jobs
    meta_cols = [s["name"] for s in specs if s["type"] == "meta" and s.get("active", True)]
    meta = pl.concat([f.select(meta_cols) for f in prepared.values()]) if meta_cols else None
    processor.fit(
        prepared["train"],
        meta_ddf=meta,
        min_categr_count=params.get("min_categr_count", 1),
        rebuild_dataset=True,
    )
    meta = None
    encoder = Encoder(processor, specs, labels)
    block = int(params.get("data_block_size", 0) or 0)
    task = params.get("task", "binary_classification")
    # what errors name: the raw file, or the train file a carved valid/test split came from
    sources = {
        split: raw_paths(params).get(split) or f"{raw_paths(params)['train']} ({split} part)"
        for split in prepared
    }
    work = []  # (split, unit index, frame, source)
    for split, frame in prepared.items():
        parts = units.get(split) or [(sources[split], frame)]
        work += [(split, i, part, path) for i, (path, part) in enumerate(parts)]

    def encode_unit(item):
        split, index, frame, source = item
        seen: dict[str, set] = {lb: set() for lb in encoder.labels}
        raw_file = bool(raw_paths(params).get(split))  # line numbers are the file's (not a carved split's)

        def encoded():
            offset = 0
            for chunk in _chunks(frame, in_memory):
                arrays = encoder.encode(chunk)
                classes = _check_labels(arrays, encoder.labels, source, task, offset if raw_file else None)
                for lb, values in classes.items():
                    seen[lb].update(values)
                offset += chunk.height
                yield arrays

        if split not in units:
            n = _write_split(out_dir, split, encoded(), block, source, streaming=not in_memory)
        else:
            units_dir = os.path.join(out_dir, f".{split}.units")
            os.makedirs(units_dir, exist_ok=True)
            n = _write_split(units_dir, f"{index:05d}", encoded(), block, source, streaming=True)
        return n, seen

    if units and jobs > 1:  # files of multi-file splits at once; a single in-memory frame uses every core
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(encode_unit, work))
    else:
        done = []
        for i, item in enumerate(work):
            work[i] = (item[0], item[1], None, item[3])  # the split's frame is released once encoded
            prepared.pop(item[0], None)
            done.append(encode_unit(item))
            del item
    rows: dict[str, int] = {}
    classes: dict[str, dict[str, set]] = {}
    for (split, _, _, _), (n, seen) in zip(work, done):
        rows[split] = rows.get(split, 0) + n
        for lb, values in seen.items():
            classes.setdefault(split, {}).setdefault(lb, set()).update(values)
    for split, n in rows.items():
        _check_eval_split(classes.get(split, {}), split, sources[split], n, task)
    for split, parts in units.items():
        _gather_units(out_dir, split, len(parts), block)
    return rows


def _gather_units(out_dir: str, split: str, n_units: int, block: int) -> None:
    """Move the blocks that each file of a split wrote into the split's own layout, in file order:
    ``split/part_NNNNN.h5`` renamed (block_size > 0), or appended into one ``split.h5`` (block_size 0)."""
    units_dir = os.path.join(out_dir, f".{split}.units")
    files = [f for i in range(n_units) for f in h5io.split_files(units_dir, f"{i:05d}")]
    if block > 0:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        for index, path in enumerate(files):
            os.rename(path, os.path.join(out_dir, split, f"part_{index:05d}.h5"))
    else:
        writer = _H5Appender(os.path.join(out_dir, f"{split}.h5"))
        try:
            for path in files:
                writer.append(h5io.read_block(path))
        finally:
            writer.close()
    shutil.rmtree(units_dir)
