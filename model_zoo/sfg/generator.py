"""The SFG feature generator (Yin et al., ICML 2025, eq. 6; the authors' ``GEN`` module).

For field j the generated embedding sees every raw field embedding::

    z_j = gamma * act([v_1; ...; v_N] W_{F(j)}),   W_{F(j)} in R^{N d x d}

All N field-wise maps form one bias-free ``Linear(N d -> N d)`` whose output is reshaped to (B, N, d).
Options (paper Sec. 3.3, the authors' code defaults): ``gamma`` (fixed output scale), ``activation`` (relu, tanh, sigmoid,
elu, silu, linear), ``residual`` (z = gamma*act(.) + v, the CrossNet/DCNv2 setting), ``exclude_self`` (zero
the diagonal d x d blocks so z_i does not see v_i), ``field_share`` (every field gets field 0's slice, the
Fig. 5 "(b.1) field-shared" ablation) and ``own_field`` (a per-field d x d map on v_i only, the Fig. 5
"(a) own" ablation).
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers.activations import make_activation


class FeatureGenerator(nn.Module):
    """Z = gamma * act(flatten(E) W) (+ E); input (B, N, d) or (B, N*d), output of the same shape."""

    def __init__(
        self,
        num_fields: int,
        embedding_dim: int,
        gamma: float = 1.0,
        activation: str = "relu",
        residual: bool = False,
        exclude_self: bool = False,
        field_share: bool = False,
        own_field: bool = False,
    ):
        super().__init__()
        self.num_fields, self.dim = int(num_fields), int(embedding_dim)
        self.gamma = float(gamma)
        self.residual, self.field_share, self.own_field = bool(residual), bool(field_share), bool(own_field)
        width = self.num_fields * self.dim
        if self.own_field:
            self.field_weights = nn.Parameter(torch.empty(self.num_fields, self.dim, self.dim))
        else:
            self.linear = nn.Linear(width, width, bias=False)
        if exclude_self and not self.own_field:
            mask = torch.ones(width, width)
            for i in range(self.num_fields):
                mask[i * self.dim : (i + 1) * self.dim, i * self.dim : (i + 1) * self.dim] = 0
            self.register_buffer("block_mask", mask)
        else:
            self.block_mask = None
        self.act = make_activation(activation, width)

    def init_weights(self):
        if self.own_field:
            nn.init.xavier_normal_(self.field_weights)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        flat_input = emb.dim() == 2
        fields = emb.view(emb.shape[0], self.num_fields, self.dim) if flat_input else emb
        if self.own_field:
            hidden = torch.einsum("bnd,nde->bne", fields, self.field_weights)
        else:
            weight = self.linear.weight if self.block_mask is None else self.linear.weight * self.block_mask
            hidden = (fields.flatten(start_dim=1) @ weight.t()).view_as(fields)
        if self.field_share:
            hidden = hidden[:, :1].expand_as(hidden)
        z = self.gamma * self.act(hidden)
        if self.residual:
            z = z + fields
        return z.flatten(start_dim=1) if flat_input else z
