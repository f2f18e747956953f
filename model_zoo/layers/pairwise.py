"""Pairwise field interactions with the two operands passed explicitly.

Every pairwise model in the zoo (AFM, PNN, FmFM, FwFM, DLRM, ...) computes its raw x raw products
through these helpers, always as ``f(left, right)`` over the field pairs ``i < j`` (the upper
triangle, ``P = n(n-1)/2`` pairs): ``left`` supplies the lower-index field ``i`` of every pair and
``right`` the higher-index field ``j``. A model calls them with ``(feature_emb, feature_emb)``; a
wrapper can hand a different tensor (e.g. a generated embedding) as either operand without touching
the model's parameters.
"""

from __future__ import annotations

import torch
from torch import nn


class PairIndex(nn.Module):
    """Row/column indices of the ``i < j`` field pairs of ``num_fields`` fields (non-persistent buffers)."""

    def __init__(self, num_fields: int):
        super().__init__()
        self.num_fields = int(num_fields)
        rows, cols = torch.triu_indices(self.num_fields, self.num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    @property
    def num_pairs(self) -> int:
        return self.num_fields * (self.num_fields - 1) // 2

    def gather(self, left: torch.Tensor, right: torch.Tensor):
        """``(left[:, i], right[:, j])`` for every pair: two (B, P, d) tensors."""
        return left[:, self.rows], right[:, self.cols]

    def product(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Element-wise products ``left_i * right_j``: (B, P, d)."""
        a, b = self.gather(left, right)
        return a * b

    def inner(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Inner products ``<left_i, right_j>``: (B, P)."""
        return self.product(left, right).sum(dim=-1)


def num_pairs(num_fields: int) -> int:
    return int(num_fields) * (int(num_fields) - 1) // 2


def pairwise_product_sum(first, second):
    """sum_{i<j} <first_i, second_j> over fields, for (B, F, d) operands -> (B, 1).

    Uses the exclusive prefix sum of ``first`` along the field axis, so it costs O(F d). With
    ``second is first`` it equals the FM second-order term.
    """
    prefix = torch.cumsum(first, dim=1) - first  # prefix[:, j] = sum_{i<j} first[:, i]
    return (prefix * second).sum(dim=(1, 2)).unsqueeze(-1)
