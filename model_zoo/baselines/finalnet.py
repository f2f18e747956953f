"""FinalNet (Zhu et al., SIGIR 2023, "FINAL: Factorized Interaction Layer for CTR Prediction").

- Factorized interaction layer: one linear map produces two halves ``h1, h2`` and the layer returns
  ``h2 + h1 * h2`` (``residual_type: sum``; the linear map is 2x the layer width) or
  ``[h2 ; h1 * h2]`` (``concat``; the linear map has the layer width, which must be even). The
  multiplicative term doubles the interaction order per layer, the residual keeps the lower orders.
  Each layer is followed by optional BatchNorm, an activation (none by default) and dropout.
- FINAL block: a stack of such layers; a linear head on the block output gives a logit.
- ``block_type: 1B``: one block on the (optionally feature-gated) embedding.
  ``block_type: 2B``: block 1 on the gated embedding, block 2 on the raw embedding; the prediction
  is ``sigmoid((z1 + z2) / 2)`` and training also supervises each block's own prediction
  (loss = BCE(y, y_hat) + BCE(y, sigmoid(z1)) + BCE(y, sigmoid(z2))).
- Feature gating: ``model_zoo.layers.gates.FieldGate`` before block 1 (``use_feature_gating``).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers.activations import make_activations
from ..layers.gates import FieldGate
from ..options import check_choice


class FactorizedInteraction(nn.Module):
    """One FINAL layer: Linear -> halves (h1, h2) -> ``h2 + h1*h2`` or ``[h2 ; h1*h2]``."""

    def __init__(self, input_dim: int, output_dim: int, residual_type: str = "sum"):
        super().__init__()
        check_choice("residual_type", residual_type, ("sum", "concat"), "FinalNet")
        if residual_type == "concat" and output_dim % 2:
            raise ModelConfigError(
                f"FinalNet block width {output_dim} must be even with residual_type concat"
            )
        self.residual_type = residual_type
        self.linear = nn.Linear(input_dim, 2 * output_dim if residual_type == "sum" else output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1, h2 = self.linear(x).chunk(2, dim=-1)
        if self.residual_type == "sum":
            return h2 + h1 * h2
        return torch.cat([h2, h1 * h2], dim=-1)


class FinalBlock(nn.Module):
    """Stacked factorized interaction layers, each followed by [BN] -> activation -> [dropout]."""

    def __init__(
        self,
        input_dim: int,
        hidden_units,
        hidden_activations=None,
        dropout: float = 0.0,
        batch_norm: bool = True,
        residual_type: str = "sum",
        activation_options=None,
    ):
        super().__init__()
        units = [int(u) for u in hidden_units]
        if not units:
            raise ModelConfigError("a FinalNet block needs at least one layer width (block*_hidden_units)")
        dims = [input_dim] + units
        self.layers = nn.ModuleList(
            [FactorizedInteraction(dims[i], dims[i + 1], residual_type) for i in range(len(units))]
        )
        self.norms = nn.ModuleList([nn.BatchNorm1d(u) if batch_norm else nn.Identity() for u in units])
        self.activations = nn.ModuleList(
            make_activations(hidden_activations, units, **(activation_options or {}))
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_dim = units[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, norm, act in zip(self.layers, self.norms, self.activations):
            x = self.dropout(act(norm(layer(x))))
        return x


def _block_and_head(input_dim: int, hidden_units, hidden_activations, dropout, shared: dict):
    """One FinalNet block on ``input_dim`` inputs and its one-unit logit head."""
    block = FinalBlock(input_dim, hidden_units or [], hidden_activations, dropout, **shared)
    return block, nn.Linear(block.output_dim, 1)


@register_model
class FinalNet(CTRModel):
    """FinalNet (Zhu et al. SIGIR 2023): FINAL blocks of factorized interaction layers, 1B or 2B with feature gating.

    Attributes: ``embedding_layer`` (``field_embedding``), ``field_gate`` (``FieldGate`` or None),
    ``block1``/``fc1`` and, for 2B, ``block2``/``fc2`` (``FinalBlock`` + linear head). No DNN.
    ``forward`` = ``embed`` -> ``gate_features`` -> ``block1`` -> ``fc1`` (|| ``block2`` -> ``fc2``);
    ``add_loss`` adds the per-block losses of 2B.
    """

    def __init__(
        self,
        feature_map,
        model_id="FinalNet",
        embedding_dim=10,
        block_type="2B",
        use_feature_gating=True,
        gating_residual="concat",
        block1_hidden_units=(64, 64, 64),
        block1_hidden_activations=None,
        block1_dropout=0.0,
        block2_hidden_units=(64, 64, 64),
        block2_hidden_activations=None,
        block2_dropout=0.0,
        batch_norm=True,
        residual_type="concat",
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.block_type = check_choice("block_type", str(block_type).upper(), ("1B", "2B"), "FinalNet")
        num_fields = feature_map.num_fields
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.field_gate = FieldGate(num_fields, gating_residual) if use_feature_gating else None
        gated_fields = self.field_gate.num_output_fields if self.field_gate is not None else num_fields
        shared = dict(batch_norm=batch_norm, residual_type=residual_type, activation_options=kwargs)
        self.block1, self.fc1 = _block_and_head(
            gated_fields * embedding_dim,
            block1_hidden_units,
            block1_hidden_activations,
            block1_dropout,
            shared,
        )
        if self.block_type == "2B":
            self.block2, self.fc2 = _block_and_head(
                num_fields * embedding_dim,
                block2_hidden_units,
                block2_hidden_activations,
                block2_dropout,
                shared,
            )
        self.finish()

    def gate_features(self, feature_emb: torch.Tensor) -> torch.Tensor:
        gated = self.field_gate(feature_emb) if self.field_gate is not None else feature_emb
        return gated.flatten(start_dim=1)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        logit1 = self.fc1(self.block1(self.gate_features(feature_emb)))
        if self.block_type == "1B":
            return self.output(logit1)
        logit2 = self.fc2(self.block2(feature_emb.flatten(start_dim=1)))
        return self.output(0.5 * (logit1 + logit2), logit1=logit1, logit2=logit2)

    def add_loss(self, return_dict, y_true):
        loss = super().add_loss(return_dict, y_true)
        if self.block_type == "2B":
            for key in ("logit1", "logit2"):
                loss = loss + self.loss_fn(self.output_activation(return_dict[key]), y_true, reduction="mean")
        return loss
