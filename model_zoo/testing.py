"""Test support for the zoo: feature maps without data, for parameter counts against the papers' logged
vocab sizes, the keyword arguments a model needs when built outside a run, and random batches for them.

``feature_map_from_vocab({"C1": 9, "C14": 2556, ...}, embedding_dim=20)`` gives a fuxictr
``FeatureMap`` of categorical fields with those vocab sizes (padding and OOV included, as in
fuxictr's ``feature_map.json``), so a model can be built and its parameters counted with no data.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from .base import count_parameters

__all__ = ["count_parameters", "feature_map_from_vocab", "model_kwargs", "random_batch"]


def feature_map_from_vocab(
    vocab_sizes: dict,
    embedding_dim: int | None = None,
    dataset_id: str = "vocab",
    numeric: list[str] | None = None,
    label: str = "label",
    sequence: dict | None = None,
    max_len: int = 3,
):
    """``sequence`` = {name: vocab_size} adds ``max_len`` sequence fields pooled by masked averaging
    (fuxictr's default encoder), e.g. KKBox's genre_ids and artist_name."""
    from fuxictr.features import FeatureMap

    fmap = FeatureMap(dataset_id, data_dir=".")
    fmap.labels = [label]
    fmap.default_emb_dim = embedding_dim
    features = OrderedDict()
    for name in numeric or []:
        features[name] = {"source": "", "type": "numeric"}
    for name, size in vocab_sizes.items():
        features[name] = {"source": "", "type": "categorical", "padding_idx": 0, "vocab_size": int(size)}
    for name, size in (sequence or {}).items():
        features[name] = {
            "source": "",
            "type": "sequence",
            "padding_idx": 0,
            "vocab_size": int(size),
            "max_len": int(max_len),
            "feature_encoder": "layers.MaskedAveragePooling()",
        }
    fmap.features = features
    fmap.num_fields = fmap.get_num_fields()
    fmap.total_features = sum(vocab_sizes.values()) + sum((sequence or {}).values()) + len(numeric or [])
    fmap.set_column_index()
    return fmap


def model_kwargs(**overrides) -> dict:
    """Keyword arguments a zoo model needs when built outside a run (CPU, no checkpoint writes)."""
    kwargs = {
        "gpu": -1,
        "verbose": 0,
        "model_root": "/tmp/ctrbench_checkpoints",
        "metrics": ["logloss", "AUC"],
        "optimizer": "adam",
        "loss": "binary_crossentropy",
        "learning_rate": 1e-3,
        "embedding_regularizer": 0,
        "net_regularizer": 0,
    }
    kwargs.update(overrides)
    return kwargs


def random_batch(
    feature_map, rows: int = 32, seed: int = 0, numeric=torch.randn, id_dtype: torch.dtype = torch.int64
) -> dict:
    """A batch of ``rows`` random inputs for ``feature_map``, drawn field by field from one generator seeded
    with ``seed``: ids in 1 .. vocab_size - 1 (0 is padding), numerics from ``numeric`` (``torch.randn`` or
    ``torch.rand``), and 0/1 labels under ``label``."""
    gen = torch.Generator().manual_seed(seed)
    X = {}
    for name, spec in feature_map.features.items():
        if spec["type"] == "numeric":
            X[name] = numeric(rows, generator=gen)
        else:
            X[name] = torch.randint(1, spec["vocab_size"], (rows,), generator=gen, dtype=id_dtype)
    X["label"] = torch.randint(0, 2, (rows,), generator=gen).float()
    return X
