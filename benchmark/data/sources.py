"""The sources of a build: the raw splits as polars frames (a csv or parquet file, a folder of them, the
files of a multi-file split read one by one), valid/test carved out of train, and the one-line errors
for raw files polars cannot read (file, line, column, value)."""

from __future__ import annotations

import errno
import os
import re

import numpy as np
import polars as pl

from ..errors import CTRBenchError
from .rawtext import QUOTE, Lines, line_chunks
from .spec import raw_paths, source_files


def unreadable_path(path: str) -> str | None:
    """Why ``path`` cannot exist although a folder above it does: a folder on the way is a file, or a
    symbolic link loops. None when it is simply missing."""
    target = current = os.path.abspath(path)
    loop = None
    while True:
        try:
            os.stat(current)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                loop = current  # the highest path that loops is the link itself
            parent = os.path.dirname(current)
            if parent == current:
                return None
            current = parent
            continue
        if loop:
            return f"{loop} is a symbolic link that loops (it leads back to itself)"
        if current != target and not os.path.isdir(current):
            return f"{current} is a file, not a folder"
        return None


def missing_data_message(params: dict, missing: list[str]) -> str:
    reasons = [r for r in (unreadable_path(p) for p in missing) if r]
    if reasons:
        return (
            f"dataset '{params['dataset_id']}': {', '.join(missing)} cannot be read: {reasons[0]}; point "
            f"data_root (--data-root, now {params.get('data_root')}) or the split paths at the folder "
            f"holding the files"
        )
    source = params.get("download") or params.get("source")
    hint = f"get it from {source}" if source else "download it (see 'ctrbench data list')"
    return (
        f"dataset '{params['dataset_id']}' is missing {', '.join(missing)}; {hint} "
        f"and place it there, or point --data-root at the folder holding it (relative paths resolve "
        f"against {params.get('_paths_base', 'the folder above the dataset config file')}, the folder "
        f"above the dataset config's; a split path that starts with data_root is not joined onto it again)"
    )


def scan(path: str, params: dict, dtypes: dict) -> pl.LazyFrame:
    fmt = params.get("data_format", "csv")
    files = source_files(path, fmt)
    if not files:
        raise CTRBenchError(missing_data_message(params, [path]))
    frames = []
    for f in files:
        if fmt == "csv":
            header = csv_header(f, params.get("sep", ","))
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
            _check_parquet(f, params)
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


PARQUET_MAGIC = b"PAR1"


def _check_parquet(path: str, params: dict) -> None:
    try:
        with open(path, "rb") as fd:
            head = fd.read(4)
    except OSError as exc:
        raise CTRBenchError(f"cannot read {path}: {exc.strerror}; check its permissions")
    if head != PARQUET_MAGIC:
        kind = "empty" if not head else "not a parquet file (it does not start with PAR1)"
        hint = "set data_format: csv" if path.endswith((".csv", ".txt", ".tsv")) else "convert it to parquet"
        raise CTRBenchError(
            f"{path} is {kind}, but dataset '{params['dataset_id']}' has data_format: parquet; {hint} "
            f"in {params.get('_dataset_config_file', 'the dataset config')}"
        )


def _field_counts_agree(path: str, sep: str) -> bool:
    """Whether every unquoted data line has the header's number of separators (each line read whole as
    one column). False also when polars cannot tell (then the exact pass below decides)."""
    try:
        lines = pl.scan_csv(
            path,
            has_header=False,
            separator="\x01",
            quote_char=None,
            new_columns=["l"],
            schema={"l": pl.String},
        )
        header = lines.head(1).collect()
        if header.height == 0 or header["l"][0] is None:
            return True
        n = header["l"][0].count(sep)
        line = pl.col("l")
        differs = (line.str.count_matches(sep, literal=True) != n) & ~line.str.contains('"', literal=True)
        return lines.slice(1).filter(differs).head(1).collect().height == 0
    except pl.exceptions.PolarsError:
        return False


def check_field_counts(path: str, sep: str) -> None:
    """Every data line has as many fields as the header (polars fails on a field too many and fills a
    field too few with null): one pass over the bytes with numpy, naming the first line that differs.
    Lines with a quote character are skipped (a quoted field may hold the separator)."""
    if len(sep.encode()) != 1:
        return
    if sep != "\x01" and _field_counts_agree(path, sep):
        return  # the common case, on polars' threads; the line is found below only when one differs
    byte = sep.encode()[0]
    n_fields, first = None, 1
    for chunk in line_chunks(path):
        lines = Lines.of(chunk)
        counts = lines.count_per_line(byte) + 1
        check = (lines.count_per_line(QUOTE) == 0) & (lines.ends > lines.starts)
        if n_fields is None:
            if not len(lines):
                return
            n_fields, check[0] = int(counts[0]), False  # the header line
        bad = np.flatnonzero(check & (counts != n_fields))
        if len(bad):
            i = int(bad[0])
            what = "a field too many" if counts[i] > n_fields else "a field too few"
            raise CTRBenchError(
                f"{path}: line {first + i:,} has {int(counts[i])} fields, the header has {n_fields} "
                f"({what}); fix or drop that line (or quote a field that holds the separator)"
            )
        first += len(lines)


def csv_header(path: str, sep: str) -> list[str]:
    """Column names from the first line (polars' n_rows=0 read still scans the file)."""
    try:
        with open(path, "rb") as fd:
            head = fd.read(8)
    except OSError as exc:
        raise CTRBenchError(f"cannot read {path}: {exc.strerror}; check its permissions")
    if head.startswith(PARQUET_MAGIC):
        raise CTRBenchError(
            f"{path} is a parquet file, not csv; set data_format: parquet in the dataset config (or write "
            f"the split as csv)"
        )
    for magic, (kind, command) in COMPRESSED.items():
        if head.startswith(magic):
            raise CTRBenchError(
                f"{path} is {kind}-compressed, not plain csv; decompress it first "
                f"({command} {os.path.basename(path)}) and point the config at the result"
            )
    try:  # only the first line: a text reader decodes a whole buffer, so a bad byte further down
        with open(path, "rb") as fd:  # would be blamed on line 1
            line = fd.readline().decode("utf-8")
    except UnicodeDecodeError:
        raise CTRBenchError(
            f"{path}: line 1 (the header) is not valid UTF-8; re-encode the file as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8)"
        )
    if not line.strip():
        raise CTRBenchError(f"{path} is empty; re-download or re-create it")
    return [name.strip().strip('"') for name in line.rstrip("\r\n").split(sep)]


_PARSE = re.compile(r"could not parse `(?P<value>.*?)` as dtype `(?P<dtype>.*?)` at column '(?P<column>.*?)'")


def all_sources(params: dict) -> list[str]:
    fmt = params.get("data_format", "csv")
    return [f for path in raw_paths(params).values() if path for f in source_files(path, fmt)]


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
        for path in all_sources(params):
            if params.get("data_format", "csv") != "csv" or column not in csv_header(path, sep):
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
        for path in all_sources(params):
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


def split_frames(train: pl.LazyFrame, params: dict) -> dict[str, pl.LazyFrame]:
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


def nan_to_null(frame: pl.LazyFrame, specs: list[dict]) -> pl.LazyFrame:
    """Literal ``NaN`` in a numeric column is a missing value (fuxictr leaves it as NaN)."""
    schema = frame.collect_schema()
    exprs = [
        pl.col(s["name"]).fill_nan(None)
        for s in specs
        if s["name"] in schema and schema[s["name"]] in (pl.Float32, pl.Float64)
    ]
    return frame.with_columns(exprs) if exprs else frame


def check_columns(frame: pl.LazyFrame, specs: list[dict], labels: list[dict], where: str) -> None:
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


def split_sources(params: dict, specs, labels, dtypes) -> dict[str, pl.LazyFrame]:
    paths = raw_paths(params)  # build() has checked that every named source exists
    if not paths["train"]:
        raise CTRBenchError(
            f"dataset '{params['dataset_id']}' ({params.get('_dataset_config_file')}) has no train_data"
        )
    if params.get("data_format", "csv") == "csv":
        for path in all_sources(params):
            csv_header(path, params.get("sep", ","))  # compressed, parquet, empty: said first
            check_field_counts(path, params.get("sep", ","))
    frames = {s: scan(p, params, dtypes) for s, p in paths.items() if p}
    if ("valid" not in frames and params.get("valid_size")) or (
        "test" not in frames and params.get("test_size")
    ):
        carved = split_frames(frames["train"], params)
        frames["train"] = carved["train"]
        for split in ("valid", "test"):
            if split not in frames and params.get(f"{split}_size"):
                frames[split] = carved[split]
    for split, frame in frames.items():
        where = paths[split] if paths.get(split) else f"{paths['train']} ({split} part)"
        check_columns(frame, specs, labels, where)
    return frames


def file_units(params: dict, dtypes: dict) -> dict[str, list[tuple[str, pl.LazyFrame]]]:
    """``(file, frame)`` of each file of the splits given as a folder of several files (Criteo Terabyte's
    days): their files are counted and encoded in parallel, each into its own blocks."""
    fmt = params.get("data_format", "csv")
    units = {}
    for split, path in raw_paths(params).items():
        files = source_files(path, fmt) if path else []
        if len(files) > 1:
            units[split] = [(f, scan(f, params, dtypes)) for f in files]
    return units


def raw_bytes(params: dict) -> int:
    total = 0
    for path in raw_paths(params).values():
        if path:
            total += sum(os.path.getsize(f) for f in source_files(path, params.get("data_format", "csv")))
    return total
