"""The download recipes: split files prepared from raw downloads, streaming (verification of the written
files against the published ones is ``downloads.py``; the shared streaming parts are ``rawtext.py``).

Preparation (``ctrbench data prepare``) turns a raw download into the split layout a dataset config
reads. Every preparer streams: text is processed in byte chunks of ``CHUNK_BYTES`` (lines are found
with numpy, never one Python call per row), polars reads tables in batches, and outputs are written
to temporary files that are renamed into place only when everything succeeded. What is held in
memory is bounded by the chunk size and, where a recipe needs it, a few bytes per row for the
stratified fold assignment (about 300 MB for Kaggle Criteo's 45.8M rows) or the side tables of KKBox
(songs, members).

The x4-style split reproduces the assignment of AutoInt's split script (scikit-learn 0.19's
``StratifiedKFold(10, shuffle=True, random_state=2018)``): each class is shuffled with a fresh
``RandomState(seed)`` and cut into 10 contiguous folds (the first ``n % 10`` one row larger); fold 0
is test, fold 1 valid, folds 2..9 (in that order, file order within a fold) train. After writing,
the files' MD5s are compared with BARS' published ones and the result is reported either way.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import polars as pl

from ..errors import CTRBenchError
from . import registry
from .downloads import check_file
from .rawtext import (
    COMMA,
    QUOTE,
    TAB,
    Lines,
    Outputs,
    binary_labels,
    check_fields,
    finish_folds,
    fold_outputs,
    line_chunks,
    stratified_folds,
)

BATCH_ROWS = 1_000_000
log = logging.getLogger("ctrbench")


# --------------------------------------------------------------------------------------------------
# Raw delimited text -> x4 split (Kaggle Criteo train.txt, Kaggle Avazu train.csv)


@dataclass
class TextLayout:
    sep: int  # byte separating fields in the raw file
    n_fields: int
    label_field: int
    has_header: bool
    header: tuple[str, ...]  # the header of the written CSVs
    to_comma: bool  # whether sep becomes ',' in the output


CRITEO_RAW = TextLayout(TAB, 40, 0, False, ("Label",) + registry.CRITEO_COLUMNS, True)
AVAZU_RAW = TextLayout(COMMA, 24, 1, True, registry.AVAZU_RAW_COLUMNS, False)
TERABYTE_RAW = TextLayout(TAB, 40, 0, False, ("label",) + registry.CRITEO_COLUMNS, True)
_TAB_TO_COMMA = bytes.maketrans(b"\t", b",")


def _text_chunks(path: str, layout: TextLayout) -> Iterator[tuple[Lines, int]]:
    """(lines, index of the chunk's first data line) for every chunk; the header line is checked, dropped."""
    seen = 0
    first = True
    for chunk in line_chunks(path):
        if first and layout.has_header:
            cut = chunk.index(b"\n") + 1
            names = chunk[:cut].decode("utf-8", "replace").strip().split(",")
            if tuple(names) != layout.header:
                raise CTRBenchError(
                    f"{path}: header {','.join(names[:6])}... is not the expected "
                    f"{','.join(layout.header[:6])}...; is this the right file?"
                )
            chunk = chunk[cut:]
            seen = 1
        first = False
        if not chunk:
            continue
        lines = Lines.of(chunk)
        yield lines, seen
        seen += len(lines)


def _text_labels(path: str, layout: TextLayout) -> np.ndarray:
    labels = []
    for lines, first in _text_chunks(path, layout):
        check_fields(lines, layout.sep, layout.n_fields, path, first)
        pos = lines.field_start(layout.label_field, layout.sep)
        labels.append(binary_labels(lines.arr[pos], lines, pos, layout.sep, path, first))
    if not labels:
        raise CTRBenchError(f"{path} has no data rows")
    return np.concatenate(labels)


def _convert(lines: Lines, layout: TextLayout, path: str, first: int) -> Lines:
    if not layout.to_comma:
        return lines
    if b"," in lines.data or b'"' in lines.data:
        bad = int(np.flatnonzero((lines.count_per_line(COMMA) + lines.count_per_line(QUOTE)) > 0)[0])
        raise CTRBenchError(
            f"{path} line {first + bad + 1:,} contains ',' or '\"', which the raw "
            f"tab-separated layout never has; the file is damaged or not the expected one"
        )
    return Lines.of(lines.data.translate(_TAB_TO_COMMA))


def _prepare_x4(path: str, out: Outputs, folder: str, layout: TextLayout, seed: int) -> None:
    labels = _text_labels(path, layout)
    log.info(
        "%s: %s rows, %.2f%% positive; assigning stratified folds (seed %d)",
        path,
        f"{len(labels):,}",
        100 * labels.mean(),
        seed,
    )
    folds = stratified_folds(labels, seed=seed)
    del labels
    header = (",".join(layout.header) + "\n").encode()
    handles, parts = fold_outputs(out, folder, header)
    offset = 0
    for lines, first in _text_chunks(path, layout):
        lines = _convert(lines, layout, path, first)
        chunk_folds = folds[offset : offset + len(lines)]
        offset += len(lines)
        byte_folds = np.repeat(chunk_folds, lines.ends - lines.starts + 1)
        for k, fd in enumerate(handles):
            fd.write(lines.arr[byte_folds == k].tobytes())
    if offset != len(folds):
        raise CTRBenchError(
            f"{path} changed while it was read ({offset:,} rows, then {len(folds):,}); run prepare again"
        )
    finish_folds(out, folder, header, handles, parts)


# --------------------------------------------------------------------------------------------------
# Criteo Terabyte: days 0-22 -> train/day_NN.csv, day 23 -> test (first half) / valid (second half); a subset
# of the days as users have it: see ``terabyte_split``


def _day_file(src: str, day: int) -> str | None:
    for name in (f"day_{day}", f"day_{day}.gz", f"day_{day}.csv", f"day_{day:02d}", f"day_{day:02d}.gz"):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            return path
    return None


TERABYTE_SINGLE_DAY_EVAL = 0.1  # share of a lone day's last lines held out (half test, then half valid)


def terabyte_split(days: list[int]) -> tuple[list[int], int | None, str]:
    """The split rule for the days present: (train days, the evaluation day, the rule in words). With
    two or more days the evaluation day is day 23 when present, else the last day, and its lines are
    halved in order (first half test, second half valid, as DLRM does with day 23); every other day is
    train. A single day is split in order itself: its last 10% of lines are held out, halved the same
    way, and the rest is train (evaluation day None)."""
    days = sorted(days)
    if len(days) == 1:
        share = f"{TERABYTE_SINGLE_DAY_EVAL:.0%}"
        return (
            days,
            None,
            (
                f"one day (day {days[0]}): its first lines train, its last {share} held out in order, the "
                f"first half of them test and the second half valid"
            ),
        )
    eval_day = 23 if 23 in days else days[-1]
    train = [d for d in days if d != eval_day]
    named = ", ".join(map(str, train))
    return (
        train,
        eval_day,
        (
            f"days {named} train; day {eval_day} (the {'last day' if eval_day != 23 else 'DLRM evaluation day'})"
            f" halved in order: first half test, second half valid"
        ),
    )


def _copy_day(path: str, parts: list, neg_drop: float, rng) -> tuple[list[int], int]:
    """Stream one day into ``parts`` ``(fd, first line, end line, train)`` by line number (end None: to the
    end); train parts drop ``neg_drop`` of the negatives. Returns the lines each part received and the
    day's lines."""
    written, total = [0] * len(parts), 0
    for lines, first in _text_chunks(path, TERABYTE_RAW):
        check_fields(lines, TAB, 40, path, first)
        lines = _convert(lines, TERABYTE_RAW, path, first)
        labels = binary_labels(lines.arr[lines.starts], lines, lines.starts, COMMA, path, first)
        index = first + np.arange(len(lines))
        drop = rng.random(len(lines)) if neg_drop > 0 and any(p[3] for p in parts) else None
        for i, (fd, start, end, train) in enumerate(parts):
            keep = (index >= start) & (index < (end if end is not None else np.inf))
            if train and drop is not None:
                keep &= (labels == 1) | (drop >= neg_drop)
            fd.write(lines.select(keep))
            written[i] += int(keep.sum())
        total += len(lines)
    return written, total


def _prepare_terabyte(src: str, out: Outputs, folder: str, neg_drop: float, seed: int) -> None:
    if not os.path.isdir(src):
        raise CTRBenchError(
            f"--from {src} must be the folder holding day_0 .. day_23 (or day_N.gz), or some of them"
        )
    days = {d: p for d in range(24) if (p := _day_file(src, d)) is not None}
    if not days:
        raise CTRBenchError(
            f"{src} holds no day_N file (day_0 .. day_23, .gz ok); download one or more days from "
            f"{registry.RAW_SOURCES['criteo_terabyte'].download}"
        )
    if not 0 <= neg_drop < 1:
        raise CTRBenchError(
            f"--neg-sample-rate {neg_drop} must be in [0, 1): the fraction of negative "
            f"training rows to drop (DLRM uses 0.875 for Terabyte)"
        )
    train_days, eval_day, rule = terabyte_split(list(days))
    log.info("Criteo Terabyte split (%d of 24 days present): %s", len(days), rule)
    header = (",".join(TERABYTE_RAW.header) + "\n").encode()
    test, valid = out.open(f"{folder}/test.csv", header), out.open(f"{folder}/valid.csv", header)
    for day in train_days:
        path = days[day]
        fd = out.open(f"{folder}/train/day_{day:02d}.csv", header)
        rng = np.random.default_rng([seed, day])
        if eval_day is not None:
            (kept,), total = _copy_day(path, [(fd, 0, None, True)], neg_drop, rng)
            fd.close()
            log.info("day %d: %s of %s rows -> train", day, f"{kept:,}", f"{total:,}")
            continue
        n = sum(len(lines) for lines, _ in _text_chunks(path, TERABYTE_RAW))
        held = math.ceil(n * TERABYTE_SINGLE_DAY_EVAL)
        n_train, n_test = n - held, math.ceil(held / 2)
        parts = [
            (fd, 0, n_train, True),
            (test, n_train, n_train + n_test, False),
            (valid, n_train + n_test, None, False),
        ]
        (kept, t, v), _ = _copy_day(path, parts, neg_drop, rng)
        fd.close()
        log.info(
            "day %d: %s rows -> train %s of %s, test %s, valid %s",
            day,
            f"{n:,}",
            f"{kept:,}",
            f"{n_train:,}",
            f"{t:,}",
            f"{v:,}",
        )
    if eval_day is not None:
        path = days[eval_day]
        n = sum(len(lines) for lines, _ in _text_chunks(path, TERABYTE_RAW))
        n_test = math.ceil(n / 2)
        _copy_day(
            path, [(test, 0, n_test, False), (valid, n_test, None, False)], 0.0, np.random.default_rng(0)
        )
        log.info(
            "day %d: %s rows -> test %s / valid %s", eval_day, f"{n:,}", f"{n_test:,}", f"{n - n_test:,}"
        )


# --------------------------------------------------------------------------------------------------
# AFN libsvm / NFM libfm -> BARS CSV (Frappe_x1, MovielensLatest_x1)


def _libsvm_file(src: str, split: str, name: str) -> str | None:
    prefix = registry.LIBFM_NAMES.get(name, "")
    nfm_split = {"valid": "validation"}.get(split, split)
    candidates = [f"{split}.libsvm", f"{prefix}.{nfm_split}.libfm", f"{prefix}.{split}.libfm"]
    for cand in candidates:
        path = os.path.join(src, cand)
        if os.path.isfile(path):
            return path
    return None


def _libsvm_to_csv(path: str, fd, n_fields: int) -> int:
    rows = 0
    for chunk in line_chunks(path):
        lines = Lines.of(chunk)
        spaces = lines.count_per_line(ord(" "))
        bad = np.flatnonzero(spaces != n_fields)
        if len(bad):
            raise CTRBenchError(
                f"{path} line {rows + int(bad[0]) + 1:,} does not have a label and {n_fields} "
                f"idx:1 tokens; not the AFN/NFM layout"
            )
        if chunk.count(b":") != chunk.count(b":1 ") + chunk.count(b":1\n"):
            raise CTRBenchError(
                f"{path}: a feature value other than 1 (idx:value) near line {rows + 1:,}; "
                f"only one-hot libsvm files convert to the BARS CSV"
            )
        text = b"\n" + chunk
        text = text.replace(b"\n-1 ", b"\n0 ").replace(b"\n+1 ", b"\n1 ")
        text = text.replace(b":1 ", b",").replace(b":1\n", b"\n").replace(b" ", b",")
        fd.write(text[1:].replace(b"\n", b"\r\n"))
        rows += len(lines)
    return rows


def _prepare_libsvm(src: str, out: Outputs, folder: str, name: str) -> None:
    if not os.path.isdir(src):
        raise CTRBenchError(
            f"--from {src} must be a folder holding train/valid/test.libsvm (AFN) or NFM's .libfm files"
        )
    header = registry.LIBSVM_HEADERS[name]
    found = {s: _libsvm_file(src, s, name) for s in registry.SPLITS_ORDER}
    if not any(found.values()):
        raise CTRBenchError(
            f"{src} has none of train.libsvm, valid.libsvm, test.libsvm (or NFM's "
            f"{registry.LIBFM_NAMES[name]}.*.libfm); get them from "
            f"{registry.RAW_SOURCES['afn_libsvm'].download}"
        )
    out.check([f"{folder}/{s}.csv" for s, p in found.items() if p])
    for split, path in found.items():
        if path is None:
            log.info("no %s file in %s: %s.csv not written", split, src, split)
            continue
        fd = out.open(f"{folder}/{split}.csv", (",".join(header) + "\r\n").encode())
        rows = _libsvm_to_csv(path, fd, len(header) - 1)
        fd.close()
        log.info("%s -> %s.csv (%s rows)", path, split, f"{rows:,}")


# --------------------------------------------------------------------------------------------------
# Tables read with polars (KKBox, ML-1M)


def _write_rows(fd, frame: pl.DataFrame) -> None:
    if frame.height:
        frame.write_csv(fd, include_header=False, line_terminator="\n", quote_style="necessary")


def _require(src: str, names: tuple[str, ...], kind: str) -> dict[str, str]:
    paths = {}
    for name in names:
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            raise CTRBenchError(
                f"{src} lacks {name}; download {registry.RAW_SOURCES[kind].download} and "
                f"pass the folder holding {', '.join(names)} to --from"
            )
        paths[name] = path
    return paths


def _naive_csv(path: str, columns: list[str]) -> pl.DataFrame:
    """A CSV read as the BARS KKBox script reads it: split on every comma, no quoting, extra fields cut."""
    frame = pl.read_csv(
        path,
        has_header=True,
        infer_schema=False,
        quote_char=None,
        truncate_ragged_lines=True,
        missing_utf8_is_empty_string=False,
    )
    if frame.columns[: len(columns)] != columns:
        raise CTRBenchError(f"{path}: columns {frame.columns} are not {columns}; is this the Kaggle file?")
    return frame.select(columns)


_PERSON_SPLIT = r"[|\\/&;]"


def _persons(column: pl.Expr) -> pl.Expr:
    return (
        column.fill_null("")
        .str.replace_all(_PERSON_SPLIT, "\x1f")
        .str.split("\x1f")
        .list.eval(pl.element().str.replace_all('"', "", literal=True).str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )


def _id_map(values: pl.Series) -> pl.DataFrame:
    """value -> 1-based id over the sorted distinct values (as strings, like the BARS script writes)."""
    uniq = values.drop_nulls().unique().sort()
    return pl.DataFrame({"key": uniq, "id": pl.Series(np.arange(1, len(uniq) + 1)).cast(pl.String)})


def _prepare_kkbox(src: str, out: Outputs, folder: str, seed: int) -> None:
    names = registry.RAW_SOURCES["kkbox_kaggle"].files
    paths = _require(src, names, "kkbox_kaggle")
    songs = _naive_csv(
        paths["songs.csv"],
        ["song_id", "song_length", "genre_ids", "artist_name", "composer", "lyricist", "language"],
    )
    extra = _naive_csv(paths["song_extra_info.csv"], ["song_id", "name", "isrc"])
    members = pl.read_csv(paths["members.csv"], infer_schema=False)
    need = ["msno", "city", "bd", "gender", "registered_via", "registration_init_time", "expiration_date"]
    if [c for c in need if c not in members.columns]:
        raise CTRBenchError(f"{paths['members.csv']}: columns {members.columns} lack some of {need}")
    train = pl.scan_csv(paths["train.csv"], infer_schema=False)
    cols = ["msno", "song_id", "source_system_tab", "source_screen_name", "source_type", "target"]
    if [c for c in cols if c not in train.collect_schema().names()]:
        raise CTRBenchError(f"{paths['train.csv']}: the header lacks some of {cols}")
    # persons, song names and ids, as the BARS script numbers them
    persons = pl.concat(
        [songs.select(_persons(pl.col(c)).alias("p")) for c in ("artist_name", "composer", "lyricist")]
    ).explode("p")["p"]
    person_ids = _id_map(persons)
    song_names = _id_map(extra["name"])
    pass1 = train.select(pl.col("target"), pl.col("msno"), pl.col("song_id"))
    labels_df = pass1.select(
        (pl.col("target").cast(pl.Float64, strict=False) > 0).cast(pl.Int8).alias("y")
    ).collect(engine="streaming")
    if labels_df["y"].null_count():
        raise CTRBenchError(f"{paths['train.csv']}: 'target' has non-numeric values")
    labels = labels_df["y"].to_numpy()
    users = _id_map(
        pl.concat([members["msno"], pass1.select("msno").unique().collect(engine="streaming")["msno"]])
    )
    song_ids = _id_map(
        pl.concat(
            [
                songs["song_id"],
                extra["song_id"],
                pass1.select("song_id").unique().collect(engine="streaming")["song_id"],
            ]
        )
    )

    def encode_persons(column: str) -> pl.Expr:
        return (
            _persons(pl.col(column))
            .list.eval(pl.element().replace_strict(person_ids["key"], person_ids["id"], default=None))
            .list.join(" ")
        )

    songs = songs.with_columns(
        pl.col("language").cast(pl.Float64, strict=False).cast(pl.Int64).cast(pl.String).fill_null(""),
        pl.col("genre_ids").str.replace_all("|", " ", literal=True).fill_null(""),
        encode_persons("artist_name").alias("artist_name"),
        encode_persons("composer").alias("composer"),
        encode_persons("lyricist").alias("lyricist"),
    )
    extra = extra.with_columns(
        pl.col("name").replace_strict(song_names["key"], song_names["id"], default=None)
    )
    folds = stratified_folds(labels, seed=seed)
    log.info("%s: %s rows, %.2f%% positive", paths["train.csv"], f"{len(labels):,}", 100 * labels.mean())
    header = (",".join(registry.KKBOX_X1_COLUMNS) + "\n").encode()
    handles, parts = fold_outputs(out, folder, header)
    offset = 0
    for batch in train.select(cols).collect_batches(chunk_size=BATCH_ROWS, maintain_order=True):
        rows = (
            batch.join(members.select(need), on="msno", how="left", maintain_order="left")
            .join(songs, on="song_id", how="left", maintain_order="left")
            .join(extra, on="song_id", how="left", maintain_order="left")
            .with_columns(
                pl.when(pl.col("target").cast(pl.Float64, strict=False) > 0)
                .then(pl.lit("1"))
                .otherwise(pl.lit("0"))
                .alias("label"),
                pl.col("msno").replace_strict(users["key"], users["id"], default=None),
                pl.col("song_id").replace_strict(song_ids["key"], song_ids["id"], default=None),
            )
            .select(registry.KKBOX_X1_COLUMNS)
        )
        batch_folds = folds[offset : offset + rows.height]
        offset += rows.height
        for k, fd in enumerate(handles):
            _write_rows(fd, rows.filter(pl.Series(batch_folds == k)))
    finish_folds(out, folder, header, handles, parts)


def _ml1m_files(src: str) -> dict[str, bytes]:
    names = registry.RAW_SOURCES["ml1m_grouplens"].files
    found: dict[str, bytes] = {}
    if os.path.isfile(src) and zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            for member in zf.namelist():
                base = os.path.basename(member)
                if base in names:
                    found[base] = zf.read(member)
    elif os.path.isdir(src):
        for root in (src, os.path.join(src, "ml-1m")):
            for name in names:
                path = os.path.join(root, name)
                if name not in found and os.path.isfile(path):
                    with open(path, "rb") as fd:
                        found[name] = fd.read()
    missing = [n for n in names if n not in found]
    if missing:
        raise CTRBenchError(
            f"{src} lacks {', '.join(missing)}; pass GroupLens' ml-1m.zip or its extracted "
            f"folder ({registry.RAW_SOURCES['ml1m_grouplens'].download})"
        )
    return found


def _double_colon(data: bytes, columns: list[str], what: str) -> pl.DataFrame:
    text = data.replace(b"\r\n", b"\n").replace(b"::", b"\x1f")
    try:
        frame = pl.read_csv(
            text,
            separator="\x1f",
            has_header=False,
            infer_schema=False,
            quote_char=None,
            new_columns=columns,
            encoding="utf8-lossy",
        )
    except pl.exceptions.PolarsError as exc:
        raise CTRBenchError(f"{what} is not the GroupLens '::' layout ({str(exc).splitlines()[0]})")
    if frame.width != len(columns):
        raise CTRBenchError(f"{what} has {frame.width} fields per line, expected {len(columns)}")
    return frame


def _prepare_ml1m(src: str, out: Outputs, folder: str, seed: int) -> None:
    files = _ml1m_files(src)
    ratings = _double_colon(files["ratings.dat"], ["UserID", "MovieID", "Rating", "Timestamp"], "ratings.dat")
    users = _double_colon(
        files["users.dat"], ["UserID", "Gender", "Age", "Occupation", "Zipcode"], "users.dat"
    )
    movies = []
    for line in files["movies.dat"].decode("latin-1").splitlines():
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) < 3:
            raise CTRBenchError(f"movies.dat line {line[:40]!r} is not MovieID::Title::Genres")
        movies.append((parts[0], "::".join(parts[1:-1]), parts[-1]))
    movies_df = pl.DataFrame(movies, schema=["MovieID", "Title", "Genres"], orient="row")
    rating = ratings["Rating"].cast(pl.Int64, strict=False)
    if rating.null_count():
        raise CTRBenchError("ratings.dat has non-integer ratings; is it GroupLens' ml-1m?")
    table = (
        ratings.with_columns((rating >= 4).cast(pl.Int8).cast(pl.String).alias("label"))
        .join(users, on="UserID", how="left", maintain_order="left")
        .join(movies_df, on="MovieID", how="left", maintain_order="left")
        .select(registry.ML1M_COLUMNS)
    )
    n = table.height
    n_test = n_valid = int(round(0.1 * n))
    perm = np.random.RandomState(seed).permutation(n)
    which = np.zeros(n, dtype=np.int8)  # 0 train, 1 valid, 2 test
    which[perm[:n_test]] = 2
    which[perm[n_test : n_test + n_valid]] = 1
    header = (",".join(registry.ML1M_COLUMNS) + "\n").encode()
    for code, split in ((0, "train"), (1, "valid"), (2, "test")):
        fd = out.open(f"{folder}/{split}.csv", header)
        _write_rows(fd, table.filter(pl.Series(which == code)))
        fd.close()
    log.info(
        "ML-1M: %s ratings -> train %s / valid %s / test %s",
        f"{n:,}",
        f"{n - n_test - n_valid:,}",
        f"{n_valid:,}",
        f"{n_test:,}",
    )


# --------------------------------------------------------------------------------------------------
# The prepare entry point


@dataclass
class Prepared:
    split_set: str
    files: dict[str, str] = field(default_factory=dict)  # split -> written path
    checks: list = field(default_factory=list)  # FileCheck per written file


def _raw_file(src: str, names: tuple[str, ...], kind: str) -> str:
    """--from may be the file itself or a folder holding it (or its .gz)."""
    if os.path.isfile(src):
        if src.endswith((".tar.gz", ".tgz", ".tar", ".zip", ".7z")):
            raise CTRBenchError(
                f"--from {src} is an archive; extract {' or '.join(names)} from it first and "
                f"pass that file (or its folder)"
            )
        return src
    if os.path.isdir(src):
        for name in names:
            stem = os.path.splitext(name)[0]
            for cand in (name, name + ".gz", stem + ".gz", stem):
                path = os.path.join(src, cand)
                if os.path.isfile(path):
                    return path
    raise CTRBenchError(
        f"--from {src}: no {' or '.join(names)} (or .gz) there; download it from "
        f"{registry.RAW_SOURCES[kind].download}"
    )


def prepare(
    name: str,
    src: str,
    out_root: str,
    force: bool = False,
    seed: int | None = None,
    neg_sample_rate: float = 0.0,
) -> Prepared:
    """Turn the raw download at ``src`` into the split files of dataset ``name`` under ``out_root``."""
    info, split_set = registry.resolve(name)
    if split_set is None:
        raise CTRBenchError(f"unknown dataset '{name}'; 'ctrbench data list' shows the known ids")
    kind = info.raw if info is not None else None
    if split_set.name in registry.LIBSVM_HEADERS:
        kind = "afn_libsvm"
    if kind is None:
        raise CTRBenchError(
            f"'{name}' ({split_set.name}) has no raw recipe: download the published split "
            f"from {split_set.download}"
        )
    src = os.path.abspath(os.path.expanduser(src))
    if not os.path.exists(src):
        raise CTRBenchError(f"--from {src} does not exist; download {registry.RAW_SOURCES[kind].download}")
    folder = split_set.files[0].path.split("/")[0]
    out = Outputs(os.path.abspath(out_root), force)
    if kind != "afn_libsvm":
        out.check([f.path for f in split_set.files])
    log.info("preparing %s from %s (%s)", split_set.name, src, registry.RAW_SOURCES[kind].description)
    try:
        if kind == "criteo_kaggle":
            _prepare_x4(
                _raw_file(src, ("train.txt",), kind), out, folder, CRITEO_RAW, 2018 if seed is None else seed
            )
        elif kind == "avazu_kaggle":
            _prepare_x4(
                _raw_file(src, ("train.csv", "train.gz"), kind),
                out,
                folder,
                AVAZU_RAW,
                2018 if seed is None else seed,
            )
        elif kind == "kkbox_kaggle":
            _prepare_kkbox(src, out, folder, 2018 if seed is None else seed)
        elif kind == "ml1m_grouplens":
            _prepare_ml1m(src, out, folder, 2023 if seed is None else seed)
        elif kind == "criteo_terabyte":
            _prepare_terabyte(src, out, folder, neg_sample_rate, 2023 if seed is None else seed)
        elif kind == "afn_libsvm":
            _prepare_libsvm(src, out, folder, split_set.name)
        written = out.commit()
    except BaseException:
        out.abort()
        raise
    result = Prepared(split_set.name)
    for f in split_set.files:
        path = os.path.join(out.directory, f.path)
        if path in written or any(w.startswith(path + os.sep) for w in written):
            result.files[f.split] = path
            result.checks.append(check_file(f, path, split_set))
    return result


__all__ = ["prepare", "stratified_folds", "Prepared", "line_chunks", "Lines"]
