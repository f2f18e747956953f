"""Batches of ``dict[column -> tensor]`` from h5 blocks, as fuxictr's ``BaseModel`` expects.

In memory (default): every block of a split is read once into one preallocated tensor per column
(categorical ids as int32, half of int64; a vocabulary past 2^31 keeps int64). An epoch draws one index
permutation from a generator seeded by ``(seed, epoch)`` and each batch gathers its rows from the
columns, so no permuted copy of the split is ever made; ids are widened to int64 per batch (what
``nn.Embedding`` and fuxictr's layers index with). The same seed gives the same batches.

``data_on_device: true`` keeps the split on the training device when it fits in the free device memory
(otherwise a log line and the host path): the permutation and the gathers run there and a step copies
nothing from the host. With ``pin_memory`` (host data, CUDA device) each batch is gathered into pinned
memory, not the whole split.

Streaming (``streaming: True``): blocks are visited in a seeded shuffled order and shuffled within
the block; only one block is held at a time.

The loader follows fuxictr's loader contract (``num_samples``, ``num_blocks``, ``__len__``,
``__iter__``) so it can also be handed to fuxictr code as ``data_loader=``.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch

from ..errors import CTRBenchError
from . import h5io
from .manifest import BuildReader, read_info
from .spec import build_key

log = logging.getLogger("ctrbench")
ID_KINDS = ("categorical", "sequence", "meta")


def _dtype(name: str, feature_map) -> np.dtype:
    """Storage dtype of a column: int32 ids (int64 past 2^31 - 1), float32 for labels and numerics."""
    spec = feature_map.features.get(name)
    if spec is None or spec["type"] not in ID_KINDS:
        return np.dtype(np.float32)
    if spec["type"] == "meta" or int(spec.get("vocab_size", 0)) >= 2**31:
        return np.dtype(np.int64)
    return np.dtype(np.int32)


def _seeded(seed: int, epoch: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return gen


def resolve_device(params: dict) -> torch.device:
    gpu = int(params.get("gpu", -1) if params.get("gpu") is not None else -1)
    return torch.device(f"cuda:{gpu}" if gpu >= 0 and torch.cuda.is_available() else "cpu")


class H5BlockLoader:
    """Iterates one split of a built dataset directory."""

    def __init__(
        self,
        feature_map,
        data_path: str,
        split: str = "train",
        batch_size: int = 32,
        shuffle: bool = True,
        streaming: bool = False,
        seed: int = 2023,
        pin_memory: bool = False,
        data_on_device: bool = False,
        device=None,
        reader=None,
        **kwargs,
    ):
        self.feature_map = feature_map
        self.reader = reader  # a manifest.BuildReader: the build is still the one this job started with
        self.split = split
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.streaming = bool(streaming)
        self.seed = seed
        self.epoch = 0
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available() and self.device.type == "cuda"
        self.files = h5io.split_files(data_path, split) if os.path.isdir(data_path) else [data_path]
        if not self.files:
            raise CTRBenchError(f"no {split} data under {data_path}; rebuild with 'ctrbench data build'")
        self.columns = list(feature_map.labels) + [
            name
            for name, spec in feature_map.features.items()
            if spec["type"] != "meta" or name == feature_map.group_id
        ]
        self.block_sizes = [h5io.block_rows(f) for f in self.files]
        self.num_samples = int(sum(self.block_sizes))
        self.num_blocks = len(self.files)
        self.num_batches = (
            sum(math.ceil(n / self.batch_size) for n in self.block_sizes)
            if self.streaming
            else math.ceil(self.num_samples / self.batch_size)
        )
        self._data = None if self.streaming else self._load(self.files, self.block_sizes)
        self.on_device = False
        if data_on_device and not self.streaming:
            self._to_device()

    # ---- holding the data

    def _load(self, files, rows) -> dict[str, torch.Tensor]:
        """Each column in one preallocated array, filled block by block (no concatenated copy);
        ``rows`` are the blocks' row counts."""
        data: dict[str, np.ndarray] = {}
        start = 0
        for path, n in zip(files, rows):
            with h5io.open_h5(path) as hf:
                if self.reader is not None:
                    self.reader.check(path)
                for c, ds in zip(self.columns, h5io.datasets(hf, path, self.columns)):
                    if c not in data:
                        data[c] = np.empty((sum(rows),) + ds.shape[1:], dtype=_dtype(c, self.feature_map))
                    target = data[c][start : start + n]
                    if ds.dtype == target.dtype:
                        ds.read_direct(target)
                    else:
                        target[...] = ds[:]
            start += n
        return {c: torch.from_numpy(v) for c, v in data.items()}

    def tensor_bytes(self) -> int:
        return sum(v.element_size() * v.nelement() for v in (self._data or {}).values())

    def _to_device(self) -> None:
        """Move the split to the training device when it fits in its free memory (with headroom)."""
        need = self.tensor_bytes()
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if need > 0.8 * free:
                log.info(
                    "data_on_device: the %s split (%.2f GiB) does not fit in the free memory of %s "
                    "(%.2f GiB); keeping it on the host",
                    self.split,
                    need / 2**30,
                    self.device,
                    free / 2**30,
                )
                return
        self._data = {k: v.to(self.device) for k, v in self._data.items()}
        self.on_device = True
        self.pin_memory = False

    # ---- batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses (for resume)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def _batch(self, data: dict[str, torch.Tensor], index) -> dict[str, torch.Tensor]:
        """One batch: rows ``index`` (a slice, or a tensor of positions) of every column, ids widened to
        int64, staged in pinned memory when the data is on the host and the device is CUDA."""
        out = {}
        for name, column in data.items():
            part = column[index] if isinstance(index, slice) else column.index_select(0, index)
            if part.dtype == torch.int32:
                part = part.to(torch.int64)
            out[name] = part.pin_memory() if self.pin_memory else part
        return out

    def _slices(self, data: dict[str, torch.Tensor], n: int, gen: torch.Generator | None, skip: int = 0):
        perm = None
        if gen is not None:
            perm = torch.randperm(n, generator=gen)
            device = next(iter(data.values())).device
            if device.type != "cpu":
                perm = perm.to(device)
        for start in range(skip * self.batch_size, n, self.batch_size):
            index = (
                slice(start, start + self.batch_size)
                if perm is None
                else perm[start : start + self.batch_size]
            )
            yield self._batch(data, index)

    def iter_from(self, skip_batches: int = 0):
        """Batches of the current epoch, starting after ``skip_batches`` (mid-epoch resume)."""
        gen = _seeded(self.seed, self.epoch) if self.shuffle and self.split == "train" else None
        if not self.streaming:
            yield from self._slices(self._data, self.num_samples, gen, skip_batches)
            return
        order = (
            torch.randperm(self.num_blocks, generator=gen).tolist()
            if gen is not None
            else list(range(self.num_blocks))
        )
        for block in order:
            n_batches = math.ceil(self.block_sizes[block] / self.batch_size)
            if skip_batches >= n_batches:
                skip_batches -= n_batches
                continue
            data = self._load([self.files[block]], [self.block_sizes[block]])
            yield from self._slices(data, self.block_sizes[block], gen, skip_batches)
            skip_batches = 0

    def __iter__(self):
        yield from self.iter_from(0)


def load_feature_map(directory: str, params: dict):
    from fuxictr.features import FeatureMap

    path = os.path.join(directory, "feature_map.json")
    if not os.path.isfile(path):
        raise CTRBenchError(
            f"{path} is missing; build the dataset with 'ctrbench data build {params['dataset_id']}'"
        )
    feature_map = FeatureMap(params["dataset_id"], directory)
    try:
        feature_map.load(path, params)
    except RuntimeError as exc:
        raise CTRBenchError(f"{path}: {exc}; the directory belongs to another dataset_id")
    except KeyError as exc:
        raise CTRBenchError(f"{path}: unknown feature {exc} in use_features/feature_specs; fix the expid")
    return feature_map


def make_loaders(
    feature_map,
    directory: str,
    params: dict,
    splits=("train", "valid", "test"),
    pin_memory: bool = False,
    device=None,
) -> dict[str, H5BlockLoader]:
    """The loaders of ``splits``; ``device`` (default: the one ``gpu`` names) is where
    ``data_on_device: true`` puts the data."""
    device = torch.device(device) if device is not None else resolve_device(params)
    reader = BuildReader(directory, _expected_key(directory, params))
    loaders = {}
    eval_bs = params.get("eval_batch_size") or params["batch_size"]
    for split in splits:
        if not h5io.split_files(directory, split):
            continue
        loaders[split] = H5BlockLoader(
            feature_map,
            directory,
            split=split,
            batch_size=params["batch_size"] if split == "train" else eval_bs,
            shuffle=params.get("shuffle", True) if split == "train" else False,
            streaming=params.get("streaming", False),
            seed=params.get("seed", 2023),
            pin_memory=pin_memory,
            data_on_device=bool(params.get("data_on_device", False)),
            device=device,
            reader=reader,
        )
    if not params.get("streaming", False):
        reader.close()  # every block is in memory: a rebuild can no longer reach this job
    return loaders


def _expected_key(directory: str, params: dict) -> str | None:
    """The build key this config asks for, where the folder is a ctrbench build of it."""
    if params.get("data_format") == "h5" or not params.get("feature_cols") or read_info(directory) is None:
        return None
    try:
        return build_key(params)
    except (CTRBenchError, OSError):
        return None
