"""GDCN (Wang et al., CIKM 2023): the gated cross network, stacked (GDCN) or parallel (GDCNP) with a DNN.

Gated cross layer: ``c_{l+1} = c_0 * (W_c c_l + b) * sigmoid(W_g c_l) + c_l`` with full D x D
matrices (``W_g`` without bias), D = n*d. The field-level dimension optimisation (FDO) of the paper
is not implemented: every field has the same embedding size, as in IBNet's comparison (IBNet paper
Sec. V-A).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel, ParallelCrossModel


class GatedCrossNet(nn.Module):
    """``num_layers`` gated cross layers on a flat (B, D) input."""

    def __init__(self, input_dim: int, num_layers: int):
        super().__init__()
        self.cross = nn.ModuleList([nn.Linear(input_dim, input_dim) for _ in range(num_layers)])
        self.gates = nn.ModuleList([nn.Linear(input_dim, input_dim, bias=False) for _ in range(num_layers)])

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for cross, gate in zip(self.cross, self.gates):
            x = x0 * cross(x) * torch.sigmoid(gate(x)) + x
        return x


@register_model
class GDCN(CTRModel):
    """GDCN-S (Wang et al. CIKM 2023): gated cross network stacked under a DNN, no FDO (uniform embedding size).

    Attributes: ``embedding_layer`` (``field_embedding``), ``crossnet`` (``GatedCrossNet``), ``dnn``
    (``model_zoo.layers.MLP`` on the cross output, ending in the output unit).
    ``forward`` = ``embed`` -> ``crossnet`` -> ``dnn``.
    """

    parallel = False  # GDCN-P: the DNN beside the cross network, fc on both

    def __init__(
        self,
        feature_map,
        model_id=None,
        embedding_dim=10,
        num_cross_layers=3,
        dnn_hidden_units=(400, 400, 400),
        dnn_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id or type(self).__name__, **kwargs)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        input_dim = feature_map.sum_emb_out_dim()
        self.crossnet = GatedCrossNet(input_dim, int(num_cross_layers))
        if self.parallel:
            self.dnn = self.dnn_tower(
                dnn_hidden_units, dnn_activations, net_dropout, batch_norm, output_dim=None
            )
            self.fc = nn.Linear(input_dim + self.tower_width(dnn_hidden_units), 1)
        else:  # on the cross output, of the embeddings' width
            self.dnn = self.dnn_tower(
                dnn_hidden_units, dnn_activations, net_dropout, batch_norm, optional=False
            )
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        x0 = self.embed(X, flatten=True)
        return self.output(self.dnn(self.crossnet(x0)))


@register_model
class GDCNP(ParallelCrossModel, GDCN):
    """GDCN-P (Wang et al. CIKM 2023): gated cross network in parallel with a DNN, concat -> linear, no FDO.

    Attributes: ``embedding_layer`` (``field_embedding``), ``crossnet`` (``GatedCrossNet``), ``dnn``
    (``model_zoo.layers.MLP`` on the embedding, no output unit), ``fc`` (linear on [cross; dnn]).
    ``forward`` = ``embed`` -> (``crossnet`` || ``dnn``) -> ``fc`` (``ParallelCrossModel``).
    """

    parallel = True
