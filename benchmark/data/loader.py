"""Batches of ``dict[column -> tensor]`` from h5 blocks, as fuxictr's ``BaseModel`` expects.

In memory (default): every block of a split is read once into one tensor per column; an epoch draws a
permutation from a generator seeded by ``(seed, epoch)``, gathers each column once, and yields
contiguous slices, so batches cost no copies and the same seed gives the same batches.

Streaming (``streaming: True``): blocks are visited in a seeded shuffled order and shuffled within
the block; only one block is held at a time.

The loader follows fuxictr's loader contract (``num_samples``, ``num_blocks``, ``__len__``,
``__iter__``) so it can also be handed to fuxictr code as ``data_loader=``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..errors import CTRBenchError
from . import h5io


def _tensor(name: str, array: np.ndarray, feature_map) -> torch.Tensor:
    spec = feature_map.features.get(name)
    if spec is None:  # a label
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    kind = spec["type"]
    if kind in ("categorical", "sequence", "meta"):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _seeded(seed: int, epoch: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2 ** 63))
    return gen


class H5BlockLoader:
    """Iterates one split of a built dataset directory."""

    def __init__(self, feature_map, data_path: str, split: str = "train", batch_size: int = 32,
                 shuffle: bool = True, streaming: bool = False, seed: int = 2023, pin_memory: bool = False,
                 **kwargs):
        self.feature_map = feature_map
        self.split = split
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.streaming = bool(streaming)
        self.seed = seed
        self.epoch = 0
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.files = h5io.split_files(data_path, split) if os.path.isdir(data_path) else [data_path]
        if not self.files:
            raise CTRBenchError(f"no {split} data under {data_path}; rebuild with 'ctrbench data build'")
        self.columns = list(feature_map.labels) + [
            name for name, spec in feature_map.features.items()
            if spec["type"] != "meta" or name == feature_map.group_id]
        self.block_sizes = [h5io.block_rows(f) for f in self.files]
        self.num_samples = int(sum(self.block_sizes))
        self.num_blocks = len(self.files)
        self.num_batches = sum(math.ceil(n / self.batch_size) for n in self.block_sizes) if self.streaming \
            else math.ceil(self.num_samples / self.batch_size)
        self._data = None if self.streaming else self._load(self.files)

    def _load(self, files) -> dict[str, torch.Tensor]:
        blocks = [h5io.read_block(f, self.columns) for f in files]
        data = {c: _tensor(c, np.concatenate([b[c] for b in blocks]) if len(blocks) > 1 else blocks[0][c],
                           self.feature_map) for c in self.columns}
        if self.pin_memory:
            data = {k: v.pin_memory() for k, v in data.items()}
        return data

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses (for resume)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def _slices(self, data: dict[str, torch.Tensor], n: int, gen: torch.Generator | None, skip: int = 0):
        if gen is not None:
            perm = torch.randperm(n, generator=gen)
            data = {k: v.index_select(0, perm) for k, v in data.items()}
            if self.pin_memory:
                data = {k: v.pin_memory() for k, v in data.items()}
        for start in range(skip * self.batch_size, n, self.batch_size):
            yield {k: v[start:start + self.batch_size] for k, v in data.items()}

    def iter_from(self, skip_batches: int = 0):
        """Batches of the current epoch, starting after ``skip_batches`` (mid-epoch resume)."""
        gen = _seeded(self.seed, self.epoch) if self.shuffle and self.split == "train" else None
        if not self.streaming:
            yield from self._slices(self._data, self.num_samples, gen, skip_batches)
            return
        order = torch.randperm(self.num_blocks, generator=gen).tolist() if gen is not None \
            else list(range(self.num_blocks))
        for block in order:
            n_batches = math.ceil(self.block_sizes[block] / self.batch_size)
            if skip_batches >= n_batches:
                skip_batches -= n_batches
                continue
            data = self._load([self.files[block]])
            yield from self._slices(data, self.block_sizes[block], gen, skip_batches)
            skip_batches = 0

    def __iter__(self):
        yield from self.iter_from(0)


def load_feature_map(directory: str, params: dict):
    from fuxictr.features import FeatureMap

    path = os.path.join(directory, "feature_map.json")
    if not os.path.isfile(path):
        raise CTRBenchError(f"{path} is missing; build the dataset with 'ctrbench data build "
                            f"{params['dataset_id']}'")
    feature_map = FeatureMap(params["dataset_id"], directory)
    try:
        feature_map.load(path, params)
    except RuntimeError as exc:
        raise CTRBenchError(f"{path}: {exc}; the directory belongs to another dataset_id")
    except KeyError as exc:
        raise CTRBenchError(f"{path}: unknown feature {exc} in use_features/feature_specs; fix the expid")
    return feature_map


def make_loaders(feature_map, directory: str, params: dict, splits=("train", "valid", "test"),
                 pin_memory: bool = False) -> dict[str, H5BlockLoader]:
    loaders = {}
    eval_bs = params.get("eval_batch_size") or params["batch_size"]
    for split in splits:
        if not h5io.split_files(directory, split):
            continue
        loaders[split] = H5BlockLoader(
            feature_map, directory, split=split,
            batch_size=params["batch_size"] if split == "train" else eval_bs,
            shuffle=params.get("shuffle", True) if split == "train" else False,
            streaming=params.get("streaming", False), seed=params.get("seed", 2023),
            pin_memory=pin_memory)
    return loaders
