"""The h5 block layout shared by ctrbench and fuxictr 2.0.

A built dataset directory holds ``feature_map.json`` and, per split, either one file ``<split>.h5``
(``data_block_size: 0``) or a folder ``<split>/part_00000.h5, part_00001.h5, ...`` of
``data_block_size`` rows each. Every h5 file has one dataset per column (features, labels, meta),
which is also how fuxictr 2.0's ``save_h5`` wrote ``train.h5``/``valid.h5``/``test.h5``, so legacy
directories read the same way.
"""

from __future__ import annotations

import glob
import os

import h5py
import numpy as np

SPLITS = ("train", "valid", "test")


def write_block(path: str, columns: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as hf:
        for name, array in columns.items():
            hf.create_dataset(name, data=array)


def split_files(data_dir: str, split: str) -> list[str]:
    """The h5 files of one split, in block order; [] when the split is absent."""
    single = os.path.join(data_dir, f"{split}.h5")
    if os.path.isfile(single):
        return [single]
    return sorted(glob.glob(os.path.join(data_dir, split, "*.h5")))


def open_h5(path: str) -> h5py.File:
    """The h5 file for reading; a damaged or non-h5 file is a one-line error naming it."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        from ..errors import CTRBenchError

        raise CTRBenchError(
            f"{path} is not a readable h5 file ({str(exc).split('(')[0].strip()}); it is damaged or "
            f"truncated: rebuild the dataset with 'ctrbench data build --force'"
        )


def datasets(hf: h5py.File, path: str, columns: list[str]) -> list[h5py.Dataset]:
    """The h5 datasets of ``columns``; a column missing from the file is a one-line error naming it."""
    missing = [c for c in columns if c not in hf]
    if missing:
        from ..errors import CTRBenchError

        raise CTRBenchError(
            f"{path} lacks column(s) {', '.join(missing)} named in feature_map.json; "
            f"rebuild the dataset with 'ctrbench data build'"
        )
    return [hf[c] for c in columns]


def read_block(path: str, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    with open_h5(path) as hf:
        names = list(hf.keys()) if columns is None else columns
        return {name: ds[:] for name, ds in zip(names, datasets(hf, path, names))}


def block_rows(path: str) -> int:
    with open_h5(path) as hf:
        for name in hf.keys():
            return int(hf[name].shape[0])
    return 0
