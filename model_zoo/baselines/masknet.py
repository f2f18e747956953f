"""MaskNet (Wang, She and Zhang, arXiv:2102.07619, 2021): instance-guided masks in MaskBlocks.

- Instance-guided mask: ``V_mask = W2 ReLU(W1 V_emb + b1) + b2`` computed from the flattened raw
  embedding ``V_emb`` of the instance; the aggregation layer ``W1`` is ``reduction_ratio`` times as
  wide as the projection (mask) width.
- MaskBlock: ``h = act(LN(W (V_mask * x)))``, no bias in ``W`` when LayerNorm follows (LN_HID).
  On the embedding, ``x = LN_EMB(V_emb)`` (LayerNorm of each field embedding, one LN per field).
- SerMaskNet (``model_type: serial``): blocks stacked, the first on ``LN_EMB(V_emb)``, each next one
  masking the previous block's output; all masks read ``V_emb``.
- ParaMaskNet (``model_type: parallel``): ``parallel_num_blocks`` blocks on ``LN_EMB(V_emb)``, outputs
  concatenated and fed to an MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers import MLP
from ..layers.activations import make_activation

_TYPES = {
    "serial": "serial",
    "serialmasknet": "serial",
    "parallel": "parallel",
    "parallelmasknet": "parallel",
}


class MaskBlock(nn.Module):
    """``act(LN(W (mask(mask_input) * x)))``; the mask generator is an MLP [r * width] -> width."""

    def __init__(
        self,
        mask_input_dim: int,
        input_dim: int,
        output_dim: int,
        reduction_ratio: float = 1.0,
        hidden_activation="relu",
        layer_norm: bool = True,
        dropout: float = 0.0,
        mask_activation="relu",
        activation_options=None,
    ):
        super().__init__()
        aggregation_dim = max(1, int(round(input_dim * float(reduction_ratio))))
        self.mask_generator = MLP(
            mask_input_dim,
            hidden_units=[aggregation_dim],
            hidden_activations=mask_activation,
            output_dim=input_dim,
            activation_options=activation_options,
        )
        self.hidden = nn.Linear(input_dim, output_dim, bias=not layer_norm)
        self.norm = nn.LayerNorm(output_dim) if layer_norm else nn.Identity()
        self.activation = make_activation(hidden_activation, output_dim, **(activation_options or {}))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def mask(self, mask_input: torch.Tensor) -> torch.Tensor:
        return self.mask_generator(mask_input)

    def forward(self, mask_input: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.norm(self.hidden(self.mask(mask_input) * x))))


@register_model
class MaskNet(CTRModel):
    """MaskNet (Wang et al. 2021): instance-guided-mask MaskBlocks, serial (SerMaskNet) or parallel (ParaMaskNet).

    Attributes: ``embedding_layer`` (``field_embedding``), ``emb_norm`` (one LayerNorm per field or
    None), ``blocks`` (ModuleList of ``MaskBlock``), ``dnn`` (``model_zoo.layers.MLP`` ending in the
    output unit: for ``parallel`` the MLP after the concatenated blocks, ``dnn_hidden_units`` then 1;
    for ``serial`` the prediction layer on the last block, plus ``dnn_hidden_units`` if any).
    ``forward`` = ``embed`` -> ``normalize_embedding`` -> ``mask_blocks`` -> ``dnn``.
    """

    def __init__(
        self,
        feature_map,
        model_id="MaskNet",
        embedding_dim=10,
        model_type="parallel",
        serial_block_units=(64, 64, 64),
        parallel_num_blocks=1,
        parallel_block_dim=64,
        dnn_hidden_units=(),
        dnn_activations="relu",
        block_activation="relu",
        mask_activation="relu",
        reduction_ratio=1.0,
        emb_layernorm=True,
        net_layernorm=True,
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        kind = _TYPES.get(str(model_type).lower())
        if kind is None:
            raise ModelConfigError(f"model_type={model_type!r} for MaskNet: use serial or parallel")
        self.model_type = kind
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        num_fields = feature_map.num_fields
        input_dim = num_fields * embedding_dim
        self.emb_norm = (
            nn.ModuleList([nn.LayerNorm(embedding_dim) for _ in range(num_fields)]) if emb_layernorm else None
        )
        block_args = dict(
            reduction_ratio=reduction_ratio,
            hidden_activation=block_activation,
            layer_norm=net_layernorm,
            dropout=net_dropout,
            mask_activation=mask_activation,
            activation_options=kwargs,
        )
        if kind == "serial":
            units = [int(u) for u in (serial_block_units or [])]
            if not units:
                raise ModelConfigError(
                    "serial_block_units must list at least one MaskBlock width for MaskNet model_type serial"
                )
            dims = [input_dim] + units
            self.blocks = nn.ModuleList(
                [MaskBlock(input_dim, dims[i], dims[i + 1], **block_args) for i in range(len(units))]
            )
            dnn_input = units[-1]
        else:
            if int(parallel_num_blocks) < 1:
                raise ModelConfigError("parallel_num_blocks must be >= 1 for MaskNet model_type parallel")
            self.blocks = nn.ModuleList(
                [
                    MaskBlock(input_dim, input_dim, int(parallel_block_dim), **block_args)
                    for _ in range(int(parallel_num_blocks))
                ]
            )
            dnn_input = int(parallel_num_blocks) * int(parallel_block_dim)
        self.dnn = self.dnn_tower(
            dnn_hidden_units, dnn_activations, net_dropout, batch_norm, optional=False, input_dim=dnn_input
        )
        self.finish()

    def normalize_embedding(self, feature_emb: torch.Tensor) -> torch.Tensor:
        """LN_EMB: LayerNorm of each field embedding, flattened to (B, n*d)."""
        if self.emb_norm is None:
            return feature_emb.flatten(start_dim=1)
        fields = [norm(feature_emb[:, i]) for i, norm in enumerate(self.emb_norm)]
        return torch.cat(fields, dim=-1)

    def mask_blocks(self, v_emb: torch.Tensor, block_input: torch.Tensor) -> torch.Tensor:
        if self.model_type == "serial":
            hidden = block_input
            for block in self.blocks:
                hidden = block(v_emb, hidden)
            return hidden
        return torch.cat([block(v_emb, block_input) for block in self.blocks], dim=-1)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        v_emb = feature_emb.flatten(start_dim=1)
        hidden = self.mask_blocks(v_emb, self.normalize_embedding(feature_emb))
        return self.output(self.dnn(hidden))
