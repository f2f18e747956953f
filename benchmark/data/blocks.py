"""The block writer of a build: encoded chunks -> ``<split>.h5`` (``data_block_size: 0``) or
``<split>/part_NNNNN.h5`` blocks of ``data_block_size`` rows, in the layout ``h5io`` reads.

One loop cuts the chunks at block boundaries; each block goes to a sink. An in-memory build collects a
block's chunks and writes it at once (``h5io.write_block``, contiguous datasets); a streamed build
appends chunk by chunk to growing datasets (``H5Appender``), so memory holds one chunk whatever the
size of the split or block.
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import Iterator

import numpy as np
import polars as pl

from ..errors import CTRBenchError
from . import h5io


def disk_full_error(exc: OSError, path: str) -> CTRBenchError | None:
    """The one line for a write that ran out of space (h5py reports ENOSPC in its message), naming the
    file and the free space; None for other OS errors."""
    if (
        getattr(exc, "errno", None) != errno.ENOSPC
        and "No space left" not in str(exc)
        and "errno = 28" not in str(exc)
    ):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        free = f"{shutil.disk_usage(folder).free / 2**30:.2f} GiB free"
    except OSError:
        free = "free space unknown"
    return CTRBenchError(
        f"no space left on the device while writing {path} ({free} in {folder}); the partial build is "
        f"removed and earlier builds are kept: free space or set build_root (--build-root) to a larger disk"
    )


def chunks(frame: pl.LazyFrame, in_memory: bool, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """The frame at once (in memory) or in batches of ``chunk_rows`` rows, in order."""
    if in_memory:
        yield frame.collect()
        return
    for batch in frame.collect_batches(chunk_size=chunk_rows, maintain_order=True):
        if batch.height:
            yield batch


class H5Appender:
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


class _Collected:
    """A block held in memory until it is complete, then written as one file."""

    def __init__(self, path: str):
        self.path, self.parts, self.rows = path, [], 0

    def append(self, chunk: dict[str, np.ndarray]) -> None:
        self.parts.append(chunk)
        self.rows += len(next(iter(chunk.values())))

    def close(self) -> None:
        parts, self.parts = self.parts, []
        columns = (
            parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        )
        del parts
        h5io.write_block(self.path, columns)


def write_split(
    out_dir: str,
    split: str,
    encoded: Iterator[dict[str, np.ndarray]],
    block_size: int,
    where: str,
    streaming: bool = False,
) -> int:
    """Write encoded chunks as ``split.h5`` (block_size 0) or ``split/part_NNNNN.h5`` blocks; returns the
    rows written. An empty streamed split (or file of a split) is an error naming ``where``."""
    if block_size > 0:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    sink = H5Appender if streaming else _Collected
    writer, index, total, path = None, 0, 0, os.path.join(out_dir, f"{split}.h5")
    try:
        for chunk in encoded:
            n = len(next(iter(chunk.values())))
            start = 0
            while start < n:
                if writer is None:
                    path = (
                        os.path.join(out_dir, split, f"part_{index:05d}.h5")
                        if block_size > 0
                        else os.path.join(out_dir, f"{split}.h5")
                    )
                    writer, index = sink(path), index + 1
                take = n - start if block_size <= 0 else min(n - start, block_size - writer.rows)
                writer.append({k: v[start : start + take] for k, v in chunk.items()})
                start += take
                total += take
                if block_size > 0 and writer.rows == block_size:
                    done, writer = writer, None
                    done.close()
        if writer is not None:
            done, writer = writer, None
            done.close()
    except OSError as exc:
        error = disk_full_error(exc, path)
        if error is None:
            raise
        raise error from exc
    finally:
        if isinstance(writer, H5Appender):  # an error mid-block: close the file (the build folder goes)
            try:
                writer.close()
            except OSError:
                pass
    if total == 0 and streaming:  # (an in-memory split's row count is checked with its labels)
        raise CTRBenchError(f"{where} has no rows")
    return total


def gather_units(out_dir: str, split: str, n_units: int, block: int) -> None:
    """Move the blocks that each file of a split wrote into the split's own layout, in file order:
    ``split/part_NNNNN.h5`` renamed (block_size > 0), or appended into one ``split.h5`` (block_size 0)."""
    units_dir = os.path.join(out_dir, f".{split}.units")
    files = [f for i in range(n_units) for f in h5io.split_files(units_dir, f"{i:05d}")]
    if block > 0:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        for index, path in enumerate(files):
            os.rename(path, os.path.join(out_dir, split, f"part_{index:05d}.h5"))
    else:
        writer = H5Appender(os.path.join(out_dir, f"{split}.h5"))
        try:
            for path in files:
                writer.append(h5io.read_block(path))
        finally:
            writer.close()
    shutil.rmtree(units_dir)
