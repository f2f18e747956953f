"""What every download recipe shares: raw text streamed in byte chunks with lines found by numpy
(``line_chunks``, ``Lines``), field and label checks per chunk, outputs written to temporary files and
renamed into place at the end (``Outputs``), and the AutoInt/BARS stratified 10-fold assignment."""

from __future__ import annotations

import gzip
import io
import os
import shutil
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import CTRBenchError

CHUNK_BYTES = 16 * 1024 * 1024
N_FOLDS = 10
NL, TAB, COMMA, QUOTE = 10, 9, 44, 34


# --------------------------------------------------------------------------------------------------
# Streaming text


def open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def line_chunks(path: str, chunk_bytes: int | None = None) -> Iterator[bytes]:
    """Blocks of whole lines (each ends with ``\\n``; CRLF becomes LF; a missing final newline is added)."""
    size = chunk_bytes or CHUNK_BYTES
    try:
        fd = open_binary(path)
    except OSError as exc:
        raise CTRBenchError(f"cannot read {path}: {exc.strerror}")
    with fd:
        rest = b""
        while True:
            try:
                block = fd.read(size)
            except (OSError, EOFError) as exc:
                raise CTRBenchError(f"{path} is unreadable or truncated ({exc}); download it again")
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n")
            if cut < 0:
                rest = block
                continue
            rest = block[cut + 1 :]
            yield block[: cut + 1].replace(b"\r\n", b"\n")
        if rest:
            yield rest.replace(b"\r\n", b"\n").rstrip(b"\r") + b"\n"


@dataclass
class Lines:
    """The lines of one chunk: the bytes as uint8 and each line's start/end (index of its ``\\n``)."""

    data: bytes
    arr: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, chunk: bytes) -> "Lines":
        arr = np.frombuffer(chunk, dtype=np.uint8)
        ends = np.flatnonzero(arr == NL)
        starts = np.empty_like(ends)
        if len(ends):
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
        return cls(chunk, arr, starts, ends)

    def __len__(self) -> int:
        return len(self.ends)

    def count_per_line(self, byte: int) -> np.ndarray:
        pos = np.flatnonzero(self.arr == byte)
        return np.searchsorted(pos, self.ends) - np.searchsorted(pos, self.starts)

    def field_start(self, index: int, sep: int) -> np.ndarray:
        """Byte offset where field ``index`` (0-based) of each line starts."""
        if index == 0:
            return self.starts
        pos = np.flatnonzero(self.arr == sep)
        first = np.searchsorted(pos, self.starts) + (index - 1)
        return pos[np.minimum(first, len(pos) - 1)] + 1

    def select(self, keep: np.ndarray) -> bytes:
        """The bytes of the lines where ``keep`` (one bool per line) is true."""
        if keep.all():
            return self.data
        mask = np.repeat(keep, self.ends - self.starts + 1)
        return self.arr[mask].tobytes()


def check_fields(lines: Lines, sep: int, n_fields: int, path: str, first_line: int) -> None:
    counts = lines.count_per_line(sep)
    bad = np.flatnonzero(counts != n_fields - 1)
    if len(bad):
        i = int(bad[0])
        raise CTRBenchError(
            f"{path} line {first_line + i + 1:,} has {int(counts[i]) + 1} fields, expected "
            f"{n_fields}; the file is not the expected layout or is damaged"
        )


def binary_labels(
    values: np.ndarray, lines: Lines, label_pos: np.ndarray, sep: int, path: str, first_line: int
) -> np.ndarray:
    """Labels that are a single '0'/'1' character followed by the separator."""
    after = lines.arr[np.minimum(label_pos + 1, len(lines.arr) - 1)]
    bad = np.flatnonzero(((values != 48) & (values != 49)) | (after != sep))
    if len(bad):
        i = int(bad[0])
        line = lines.data[lines.starts[i] : lines.ends[i]][:60].decode("utf-8", "replace")
        raise CTRBenchError(
            f"{path} line {first_line + i + 1:,}: label is not 0 or 1 ({line!r}); "
            f"the file is not the expected layout"
        )
    return (values - 48).astype(np.int8)


# --------------------------------------------------------------------------------------------------
# Outputs written to temporary files and renamed into place at the end


class Outputs:
    def __init__(self, directory: str, force: bool):
        self.directory = directory
        self.force = force
        self.pending: dict[str, str] = {}
        self.handles: dict[str, io.BufferedWriter] = {}

    def check(self, names: list[str]) -> None:
        existing = [n for n in names if os.path.exists(os.path.join(self.directory, n))]
        if existing and not self.force:
            raise CTRBenchError(
                f"{os.path.join(self.directory, existing[0])} already exists; pass --force "
                f"to replace it or --out to write elsewhere"
            )

    def open(self, name: str, header: bytes | None = None) -> io.BufferedWriter:
        final = os.path.join(self.directory, name)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.tmp-{os.getpid()}")
        fd = open(tmp, "wb")
        if header:
            fd.write(header)
        self.pending[final] = tmp
        self.handles[final] = fd
        return fd

    def scratch(self, name: str) -> str:
        path = os.path.join(self.directory, f".{name}.scratch-{os.getpid()}")
        os.makedirs(self.directory, exist_ok=True)
        self.pending[path] = path
        return path

    def close(self) -> None:
        for fd in self.handles.values():
            if not fd.closed:
                fd.close()

    def commit(self) -> list[str]:
        self.close()
        done = []
        for final, tmp in self.pending.items():
            if final == tmp:
                if os.path.exists(tmp):
                    os.remove(tmp)
                continue
            os.replace(tmp, final)
            done.append(final)
        return done

    def abort(self) -> None:
        self.close()
        for tmp in self.pending.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def concat_files(paths: list[str], fd) -> None:
    """The files' bytes, one after the other, onto the open binary file ``fd``."""
    for path in paths:
        with open(path, "rb") as src:
            shutil.copyfileobj(src, fd, CHUNK_BYTES)


# --------------------------------------------------------------------------------------------------
# The AutoInt/BARS stratified 10-fold assignment


def stratified_folds(labels: np.ndarray, n_splits: int = N_FOLDS, seed: int = 2018) -> np.ndarray:
    """Fold (0..n_splits-1) of every row, as scikit-learn 0.19's StratifiedKFold(shuffle=True,
    random_state=seed) assigns test folds: per class (in sorted order), ``RandomState(seed).shuffle`` of
    ``arange(max(count, n_splits))`` cut into contiguous folds, the first ``count % n_splits`` larger."""
    labels = np.asarray(labels)
    folds = np.empty(len(labels), dtype=np.int8)
    for cls in np.unique(labels):
        mask = labels == cls
        n = int(mask.sum())
        m = max(n, n_splits)
        order = np.arange(m, dtype=np.int32 if m < 2**31 else np.int64)
        np.random.RandomState(seed).shuffle(order)
        sizes = np.full(n_splits, m // n_splits, dtype=np.int64)
        sizes[: m % n_splits] += 1
        by_position = np.repeat(np.arange(n_splits, dtype=np.int8), sizes)
        cls_folds = np.empty(m, dtype=np.int8)
        cls_folds[order] = by_position
        folds[mask] = cls_folds[:n]
        del order, by_position, cls_folds
    return folds


def fold_outputs(outputs: Outputs, folder: str, header: bytes) -> tuple[list, list[str]]:
    """Handles per fold: fold 0 -> test.csv, fold 1 -> valid.csv, folds 2..9 -> scratch parts of train."""
    handles = [outputs.open(f"{folder}/test.csv", header), outputs.open(f"{folder}/valid.csv", header)]
    parts = []
    for k in range(2, N_FOLDS):
        part = outputs.scratch(f"{folder}.fold{k}")
        parts.append(part)
        handles.append(open(part, "wb"))
    return handles, parts


def finish_folds(outputs: Outputs, folder: str, header: bytes, handles, parts) -> None:
    for fd in handles[2:]:
        fd.close()
    train = outputs.open(f"{folder}/train.csv", header)
    concat_files(parts, train)
    train.close()
