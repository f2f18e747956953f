"""SAM (Cheng and Xue, SIGIR 2021, "Looking at CTR Prediction Again: Is Attention All You Need?").

Self-attentive interaction modes over the field embeddings E (B, n, d), selected by
``interaction_type``:

- ``SAM1``: no interaction, the n embeddings themselves;
- ``SAM2A``: all n x n field pairs, ``o_ij = <e_i, e_j> w_ij`` (a learnable vector per pair);
- ``SAM2E``: all n x n field pairs, ``o_ij = <e_i, e_j> (e_i * e_j)``;
- ``SAM3A``: attention-style, ``o_i = sum_j <e_i, K e_j> w_ij`` (+ ``Q e_i`` with ``use_residual``),
  stacked ``num_interaction_layers`` times;
- ``SAM3E``: ``o_i = sum_j <e_i, K e_j> (e_i * e_j)`` (+ ``Q e_i``), stacked likewise.

Aggregation (``aggregation``): ``concat`` flattens the output vectors, ``weighted_pooling`` sums them
with one learnable weight per vector; a linear layer gives the logit. Dropout ``net_dropout`` after
each interaction layer.

Training from fuxictr's N(0, 1e-4) embedding init: SAM2E (and SAM3E without ``use_residual``) is of
4th order in the embeddings and has no lower-order path, so at that scale its output is about
d * 1e-16, below float32's resolution of the logit (every prediction is the same, AUC exactly 0.5),
and its gradient (about 1e-12) is far below Adam's epsilon (1e-8): measured on frappe_x1_partial
(batch 4096, 13 steps an epoch), SAM2E stays at valid AUC 0.500000 for the epochs early stopping
allows, with or without the embedding L2. The modes FuxiCTR's BARS runs tune on Frappe, SAM3A/SAM3E
with ``use_residual`` (a first-order path Q e_i), train from that init (``SAM_frappe_partial``).
``embedding_initializer`` (a fuxictr initializer string, e.g. ``"partial(nn.init.normal_, std=1e-2)"``)
sets a larger start for the 4th-order modes.
"""

from __future__ import annotations

import torch
from fuxictr.pytorch.layers import FeatureEmbedding
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError

MODES = ("SAM1", "SAM2A", "SAM2E", "SAM3A", "SAM3E")
EMBEDDING_INIT = "partial(nn.init.normal_, std=1e-4)"  # fuxictr's default


class PairwiseDotWeighted(nn.Module):
    """SAM2A: (B, n, d) x (B, n, d) -> (B, n*n, d), ``<l_i, r_j> w_ij``."""

    def __init__(self, num_fields: int, embedding_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_fields, num_fields, embedding_dim))

    def init_weights(self):
        nn.init.ones_(self.weight)

    def forward(self, left, right):
        scores = torch.bmm(left, right.transpose(1, 2))  # (B, n, n)
        return (scores.unsqueeze(-1) * self.weight).flatten(start_dim=1, end_dim=2)


class PairwiseDotElementwise(nn.Module):
    """SAM2E: (B, n*n, d), ``<l_i, r_j> (l_i * r_j)``."""

    def forward(self, left, right):
        scores = torch.bmm(left, right.transpose(1, 2))
        products = left.unsqueeze(2) * right.unsqueeze(1)  # (B, n, n, d)
        return (scores.unsqueeze(-1) * products).flatten(start_dim=1, end_dim=2)


class FieldAttention(nn.Module):
    """SAM3A (``elementwise=False``) / SAM3E (``True``): (B, n, d) -> (B, n, d)."""

    def __init__(self, num_fields: int, embedding_dim: int, elementwise: bool, use_residual: bool):
        super().__init__()
        self.elementwise = elementwise
        self.key = nn.Linear(embedding_dim, embedding_dim, bias=False)
        self.residual = nn.Linear(embedding_dim, embedding_dim, bias=False) if use_residual else None
        if not elementwise:
            self.weight = nn.Parameter(torch.ones(num_fields, num_fields, embedding_dim))

    def init_weights(self):
        if not self.elementwise:
            nn.init.ones_(self.weight)

    def forward(self, left, right):
        scores = torch.bmm(left, self.key(right).transpose(1, 2))  # (B, n, n)
        if self.elementwise:
            values = left.unsqueeze(2) * right.unsqueeze(1)  # (B, n, n, d)
        else:
            values = self.weight.unsqueeze(0)
        out = (scores.unsqueeze(-1) * values).sum(dim=2)
        if self.residual is not None:
            out = out + self.residual(left)
        return out


@register_model
class SAM(CTRModel):
    """SAM (Cheng & Xue SIGIR 2021): self-attentive interaction modes SAM1/2A/2E/3A/3E (``interaction_type``), concat or weighted pooling.

    Attributes: ``embedding_layer`` (FeatureEmbedding), ``interaction_layers`` (ModuleList; 1 layer
    for SAM1/2A/2E, ``num_interaction_layers`` for SAM3A/3E), ``pool_weight`` (weighted pooling),
    ``fc`` (prediction layer). No DNN.
    ``forward`` = ``embed`` -> ``interact(feature_emb, feature_emb)`` -> ``aggregate`` -> ``fc``;
    each interaction layer is called as ``layer(left, right)``.
    """

    def __init__(
        self,
        feature_map,
        model_id="SAM",
        embedding_dim=10,
        interaction_type="SAM2E",
        aggregation="concat",
        num_interaction_layers=3,
        use_residual=False,
        net_dropout=0.0,
        embedding_initializer=EMBEDDING_INIT,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        mode = str(interaction_type).upper()
        if mode not in MODES:
            raise ModelConfigError(
                f"interaction_type={interaction_type!r} for SAM: use one of {', '.join(MODES)}"
            )
        if aggregation not in ("concat", "weighted_pooling"):
            raise ModelConfigError(f"aggregation={aggregation!r} for SAM: use concat or weighted_pooling")
        self.mode, self.aggregation = mode, aggregation
        n = feature_map.num_fields
        self.embedding_layer = FeatureEmbedding(
            feature_map, embedding_dim, embedding_initializer=embedding_initializer
        )
        if mode == "SAM1":
            layers, num_vectors = [], n
        elif mode == "SAM2A":
            layers, num_vectors = [PairwiseDotWeighted(n, embedding_dim)], n * n
        elif mode == "SAM2E":
            layers, num_vectors = [PairwiseDotElementwise()], n * n
        else:
            layers = [
                FieldAttention(n, embedding_dim, mode == "SAM3E", bool(use_residual))
                for _ in range(int(num_interaction_layers))
            ]
            num_vectors = n
        self.interaction_layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(net_dropout) if net_dropout > 0 else nn.Identity()
        if aggregation == "weighted_pooling":
            self.pool_weight = nn.Parameter(torch.ones(num_vectors, 1))
            final_dim = embedding_dim
        else:
            final_dim = num_vectors * embedding_dim
        self.fc = nn.Linear(final_dim, 1)
        self.finish()

    def interact(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Apply the interaction layers; SAM3A/3E feed each layer's output to the next as both operands."""
        out = left
        for i, layer in enumerate(self.interaction_layers):
            out = self.dropout(layer(left, right) if i == 0 else layer(out, out))
        return out

    def aggregate(self, vectors: torch.Tensor) -> torch.Tensor:
        if self.aggregation == "concat":
            return vectors.flatten(start_dim=1)
        return (vectors * self.pool_weight).sum(dim=1)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embedding_layer(X)
        return self.output(self.fc(self.aggregate(self.interact(feature_emb, feature_emb))))
