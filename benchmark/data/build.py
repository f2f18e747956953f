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

The build's parts: ``spec`` (what the config asks for, the build key), ``sources`` (the raw splits as
frames), ``processor``/``vocab``/``encode`` (statistics and ids), ``blocks`` (the h5 writer) and
``manifest`` (build_info.json, checksums, verify-build); this module chooses memory or streaming and
runs them into a temporary folder that is renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from ..errors import CTRBenchError
from . import h5io
from .blocks import chunks, disk_full_error, gather_units, write_split
from .encode import Encoder
from .manifest import (
    INFO_FILE,
    MARKER_FILE,
    VERIFY_ON_REUSE_BYTES,
    active_readers,
    damaged_files,
    is_legacy_dir,
    read_info,
    readers_error,
    remove_stale_builds,
    swap_lock,
    verify_build,
    write_info,
)
from .processor import Processor
from .sources import file_units, missing_data_message, nan_to_null, raw_bytes, read_error, split_sources
from .spec import (
    build_jobs,
    build_key,
    column_dtypes,
    data_dir,
    feature_specs,
    label_specs,
    raw_paths,
    source_files,
)

# Raw inputs up to this many bytes are read once into memory; larger ones stream in two passes.
IN_MEMORY_BYTES = 2 * 1024**3  # input held in memory when the free memory cannot be read
STREAM_CHUNK_ROWS = 1_000_000  # rows per batch of a streamed build (about 0.5 GB of Criteo-like columns)

log = logging.getLogger("ctrbench")

__all__ = [  # what callers import from here (the parts live in the modules above)
    "INFO_FILE",
    "MARKER_FILE",
    "Processor",
    "build",
    "build_key",
    "choose_in_memory",
    "data_dir",
    "feature_specs",
    "label_specs",
    "raw_paths",
    "read_info",
    "remove_stale_builds",
    "verify_build",
]


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


def _check_finite(chunk: pl.DataFrame, numeric: list[str], where: str, first_row: int | None) -> None:
    """Numeric columns hold finite numbers: ``inf``/``-inf``, and a NaN or empty value that no ``fill_na``
    replaced (a column declared ``fill_na: null``), are named with their line (one polars pass per chunk)."""
    names = [c for c in numeric if c in chunk.columns and chunk.schema[c].is_numeric()]
    if not names:
        return
    bad = {c: pl.col(c).is_finite().fill_null(False).not_() for c in names}
    found = chunk.select([e.any().alias(c) for c, e in bad.items()]).row(0, named=True)
    for column in (c for c in names if found[c]):
        index = chunk.select(bad[column].arg_true().first()).item()
        value = chunk[column][index]
        at = f": line {first_row + index + 2}" if first_row is not None else f" (row {index + 1})"
        if value is None or value != value:
            raise CTRBenchError(
                f"{where}{at}, column '{column}' holds an empty or NaN value and the column has no fill_na; "
                f"fix or drop that row, or give the column a fill_na value"
            )
        raise CTRBenchError(
            f"{where}{at}, column '{column}' holds {value}, not a finite number; fix or drop that row, "
            f"or clip the column before building"
        )


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


# --------------------------------------------------------------------------------------------------
# The build


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
    absent = [p for p in raw_paths(params).values() if p and not os.path.exists(p)]
    if params.get("synthetic") and absent:
        from .synth import write_from_params

        if os.path.exists(params["train_data"]):  # a split was deleted: all are written again, same seed
            log.info(
                "%s is missing; regenerating synthetic dataset '%s' from its seed",
                absent[0],
                params["dataset_id"],
            )
        write_from_params(params)
    fmt = params.get("data_format", "csv")
    for split, path in raw_paths(params).items():
        if path and os.path.isdir(path) and not source_files(path, fmt):
            raise CTRBenchError(
                f"{split}_data {path} is a directory with no *.{fmt} files in it; point "
                f"{split}_data at a .{fmt} file or at a folder of them"
            )
    missing = [p for p in raw_paths(params).values() if p and not source_files(p, fmt)]
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
    readers = active_readers(target) if os.path.exists(target) else []
    if readers:  # said before the work; the swap checks again
        raise readers_error(target, params["dataset_id"], readers)
    started = time.time()
    specs, labels = feature_specs(params), label_specs(params)
    dtypes = column_dtypes(specs, labels)
    frames = split_sources(params, specs, labels, dtypes)
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
            write_info(
                tmp,
                key,
                params["dataset_id"],
                rows,
                params.get("data_block_size", 0),
                time.time() - started,
            )
        except pl.exceptions.ComputeError as exc:  # a raw file polars could not read: say where
            error = read_error(exc, params, dtypes)
            if error is None:
                raise
            raise error from exc
        except OSError as exc:  # feature_map.json, the vocabulary, a block: the disk filled up
            error = disk_full_error(exc, exc.filename or tmp)
            if error is None:
                raise
            raise error from exc
        with swap_lock(target):  # no reader registers between this check and the swap
            readers = active_readers(target) if os.path.exists(target) else []
            if readers:
                raise readers_error(target, params["dataset_id"], readers)
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
    raw = raw_bytes(params)
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
    in_memory, why = choose_in_memory(params)
    log.info("Building %s %s: %s", params["dataset_id"], "in memory" if in_memory else "streamed", why)
    jobs = build_jobs(params)
    processor = Processor(
        specs,
        labels,
        params["dataset_id"],
        out_dir,
        group_id=params.get("group_id"),
        min_count=params.get("min_categr_count", 1),
        where=f"dataset '{params['dataset_id']}' ({where})",
        train_source=raw_paths(params)["train"],
        streaming=not in_memory,
        chunk_rows=STREAM_CHUNK_ROWS,
        jobs=jobs,
    )
    prepared = {s: processor.preprocess(nan_to_null(f, specs)) for s, f in frames.items()}
    units = {}
    if in_memory:
        # train is read once for the statistics and its encoding; valid and test are read when encoded,
        # so that memory holds one split (and its encoded copy) at a time
        prepared["train"] = prepared["train"].collect().lazy()
    else:
        units = {
            s: [(path, processor.preprocess(nan_to_null(f, specs))) for path, f in files]
            for s, files in file_units(params, dtypes).items()
            if s in prepared
        }
    meta_cols = [s["name"] for s in specs if s["type"] == "meta" and s.get("active", True)]
    meta = pl.concat([f.select(meta_cols) for f in prepared.values()]) if meta_cols else None
    processor.fit(
        prepared["train"],
        meta_ddf=meta,
        count_units=[f for _, f in units["train"]] if "train" in units else None,
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

    numeric = [s["name"] for s in specs if s["type"] == "numeric" and s.get("active", True)]

    def encode_unit(item):
        split, index, frame, source = item
        seen: dict[str, set] = {lb: set() for lb in encoder.labels}
        raw_file = bool(raw_paths(params).get(split))  # line numbers are the file's (not a carved split's)

        def encoded():
            offset = 0
            for chunk in chunks(frame, in_memory, STREAM_CHUNK_ROWS):
                _check_finite(chunk, numeric, source, offset if raw_file else None)
                arrays = encoder.encode(chunk)
                classes = _check_labels(arrays, encoder.labels, source, task, offset if raw_file else None)
                for lb, values in classes.items():
                    seen[lb].update(values)
                offset += chunk.height
                yield arrays

        if split not in units:
            n = write_split(out_dir, split, encoded(), block, source, streaming=not in_memory)
        else:
            units_dir = os.path.join(out_dir, f".{split}.units")
            os.makedirs(units_dir, exist_ok=True)
            n = write_split(units_dir, f"{index:05d}", encoded(), block, source, streaming=True)
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
        gather_units(out_dir, split, len(parts), block)
    return rows
