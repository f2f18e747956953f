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

Embedding init (``embedding_initializer=None``, the default, picks it per mode; a fuxictr initializer
string such as ``"partial(nn.init.normal_, std=1e-4)"`` overrides it). fuxictr's N(0, 1e-4) suits the
modes whose output has a term of order one or two in the embeddings: SAM1, SAM2A, one SAM3A layer, and
SAM3A/SAM3E with ``use_residual`` (the modes FuxiCTR's BARS runs tune, e.g. ``SAM_frappe_partial``).
SAM2E is of order four with no lower-order path, and SAM3A/SAM3E without the residual multiply the
order by 2/4 a layer (``lowest_order``). From N(0, 1e-4) such an output is about d * 1e-16, below
float32's resolution of the logit (every prediction equal: AUC exactly 0.5), and its gradients (about
1e-13) sit far below Adam's epsilon (1e-8), so an embedding moves ~1e-8 a step and early stopping ends
the run before anything is learnt; FuxiCTR's own SAM behaves the same way at that init. Those modes
start instead at the scale where a layer neither vanishes nor explodes:

- SAM2E and SAM3E (one or two layers, no residual): N(0, 1/d), unit expected norm per embedding;
- SAM3A without residual (two or more layers): N(0, 1/(n d)), where a layer's output
  ``sum_j <e_i, K e_j>`` (about sqrt(n d) sigma^2 per entry) keeps the input's scale sigma.

Measured on frappe_x1_partial (batch 4096, Adam 1e-3, 30 epochs, no L2; test AUC): SAM2E 0.500000 from
N(0, 1e-4) and N(0, 1e-3), 0.917 from N(0, 1/d); SAM3A x3 without residual 0.500 from N(0, 1e-4),
0.499 from N(0, 1/d) (it explodes), 0.936 from N(0, 1/(n d)); SAM3A x2 0.926; SAM3E x1 0.921 and x2
0.902 from N(0, 1/d). SAM3E x3 without residual (order 64) trained from none of N(0, s^2),
s = 0.1, 0.2, 0.32, 0.46 (vanishing or exploding): the model logs a warning to use ``use_residual``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..options import check_choice

MODES = ("SAM1", "SAM2A", "SAM2E", "SAM3A", "SAM3E")
log = logging.getLogger(__name__)
EMBEDDING_INIT = "partial(nn.init.normal_, std=1e-4)"  # fuxictr's default


def lowest_order(mode: str, use_residual: bool, num_layers: int) -> int:
    """Lowest order, in the embeddings, of a term of SAM's interaction output."""
    if mode == "SAM1":
        return 1
    if mode == "SAM2A":
        return 2
    if mode == "SAM2E":
        return 4
    if use_residual:
        return 1
    per_layer = 2 if mode == "SAM3A" else 4
    return per_layer ** max(int(num_layers), 1)


def default_embedding_initializer(
    mode: str, use_residual: bool, num_layers: int, num_fields: int, embedding_dim: int
) -> str:
    """The embedding init of a SAM mode (the module doc gives the rule and its measurements)."""
    order = lowest_order(mode, use_residual, num_layers)
    if order <= 2:
        return EMBEDDING_INIT
    if mode == "SAM3A":
        std = float(num_fields * embedding_dim) ** -0.5
    else:
        std = float(embedding_dim) ** -0.5
        if mode == "SAM3E" and int(num_layers) >= 3:
            log.warning(
                "SAM3E with %d layers and no residual is of order %d in the embeddings and trains from "
                "no measured init; set use_residual: true",
                int(num_layers),
                order,
            )
    return f"partial(nn.init.normal_, std={std!r})"


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

    Attributes: ``embedding_layer`` (``field_embedding``), ``interaction_layers`` (ModuleList; 1 layer
    for SAM1/2A/2E, ``num_interaction_layers`` for SAM3A/3E), ``pool_weight`` (weighted pooling),
    ``fc`` (prediction layer). No DNN.
    ``forward`` = ``embed`` -> ``interact(feature_emb, feature_emb)`` -> ``aggregate`` -> ``fc``;
    each interaction layer is called as ``layer(left, right)``.
    """

    choices = {"aggregation": ("concat", "weighted_pooling")}

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
        embedding_initializer=None,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        mode = check_choice("interaction_type", str(interaction_type).upper(), MODES, "SAM")
        self.mode, self.aggregation = mode, self.choose("aggregation", aggregation)
        n = feature_map.num_fields
        if embedding_initializer is None:
            embedding_initializer = default_embedding_initializer(
                mode, bool(use_residual), num_interaction_layers, n, embedding_dim
            )
        self.embedding_layer = self.field_embedding(
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
        feature_emb = self.embed(X)
        return self.output(self.fc(self.aggregate(self.interact(feature_emb, feature_emb))))
