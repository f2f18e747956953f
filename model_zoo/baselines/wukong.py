"""Wukong (Zhang et al., ICML 2024, "Wukong: Towards a Scaling Law for Large-Scale Recommendation").

A stack of Wukong layers over the embedding tokens X_0 (B, n, d):

- Factorization Machine Block: ``FMB(X) = reshape(MLP(LN(flatten(X (X^T Y)))), n_F, d)``, the
  optimised FM ``X X^T Y`` with a learnable projection ``Y`` (n x k, k = ``rank_fmb``);
- Linear Compression Block: ``LCB(X) = W_L X``, a bias-free linear recombination of the tokens
  (n_L x n);
- ``X_{i+1} = LN(concat(FMB(X_i), LCB(X_i)) + X_i)``, with a bias-free linear token projection of the
  residual when n != n_F + n_L (LayerNorm over d per token).

The flattened output of the last layer goes through an MLP to the logit.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers import MLP


class FactorizationMachineBlock(nn.Module):
    """(B, n, d) -> (B, num_out, d) via ``MLP(LN(flatten(left (right^T Y))))``."""

    def __init__(
        self,
        num_in: int,
        num_out: int,
        embedding_dim: int,
        rank: int,
        hidden_units=(),
        hidden_activations="relu",
        dropout: float = 0.0,
        layer_norm: bool = True,
        activation_options=None,
    ):
        super().__init__()
        self.num_out, self.embedding_dim = num_out, embedding_dim
        self.projection = nn.Parameter(torch.empty(num_in, rank))
        self.norm = nn.LayerNorm(num_in * rank) if layer_norm else nn.Identity()
        self.mlp = MLP(
            num_in * rank,
            hidden_units=list(hidden_units or []),
            hidden_activations=hidden_activations,
            output_dim=num_out * embedding_dim,
            dropout_rates=dropout,
            activation_options=activation_options,
        )

    def init_weights(self):
        nn.init.xavier_normal_(self.projection)

    def interact(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """The optimised FM ``left (right^T Y)``: (B, n, k)."""
        return torch.bmm(left, torch.einsum("bnd,nk->bdk", right, self.projection))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fm = self.interact(x, x).flatten(start_dim=1)
        return self.mlp(self.norm(fm)).view(-1, self.num_out, self.embedding_dim)


class LinearCompressionBlock(nn.Module):
    """``W_L X``: (B, n, d) -> (B, num_out, d), bias-free."""

    def __init__(self, num_in: int, num_out: int):
        super().__init__()
        self.linear = nn.Linear(num_in, num_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


class WukongLayer(nn.Module):
    def __init__(
        self,
        num_in: int,
        num_fmb: int,
        num_lcb: int,
        embedding_dim: int,
        rank: int,
        fmb_hidden_units,
        fmb_activations,
        dropout: float,
        layer_norm: bool,
        activation_options=None,
    ):
        super().__init__()
        self.fmb = FactorizationMachineBlock(
            num_in,
            num_fmb,
            embedding_dim,
            rank,
            fmb_hidden_units,
            fmb_activations,
            dropout,
            layer_norm,
            activation_options,
        )
        self.lcb = LinearCompressionBlock(num_in, num_lcb)
        num_out = num_fmb + num_lcb
        self.residual = LinearCompressionBlock(num_in, num_out) if num_out != num_in else None
        self.norm = nn.LayerNorm(embedding_dim) if layer_norm else nn.Identity()
        self.num_out = num_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.fmb(x), self.lcb(x)], dim=1)
        residual = self.residual(x) if self.residual is not None else x
        return self.norm(out + residual)


@register_model
class Wukong(CTRModel):
    """Wukong (Zhang et al. ICML 2024): stacked layers of FM blocks + linear compression blocks with residual LayerNorm, MLP head.

    Attributes: ``embedding_layer`` (``field_embedding``), ``wukong_layers`` (ModuleList of
    ``WukongLayer`` = ``fmb`` + ``lcb``), ``dnn`` (``model_zoo.layers.MLP`` head on the flattened last
    layer, ending in the output unit). ``forward`` = ``embed`` -> ``wukong_layers`` -> ``dnn``.
    """

    def __init__(
        self,
        feature_map,
        model_id="Wukong",
        embedding_dim=10,
        num_layers=3,
        num_emb_fmb=16,
        num_emb_lcb=16,
        rank_fmb=24,
        fmb_hidden_units=(256, 256),
        fmb_activations="relu",
        dnn_hidden_units=(256, 256),
        dnn_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        layer_norm=True,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        if int(num_layers) < 1 or int(num_emb_fmb) + int(num_emb_lcb) < 1:
            raise ModelConfigError("Wukong needs num_layers >= 1 and num_emb_fmb + num_emb_lcb >= 1")
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        layers, num_in = [], feature_map.num_fields
        for _ in range(int(num_layers)):
            layer = WukongLayer(
                num_in,
                int(num_emb_fmb),
                int(num_emb_lcb),
                embedding_dim,
                int(rank_fmb),
                fmb_hidden_units,
                fmb_activations,
                net_dropout,
                layer_norm,
                activation_options=kwargs,
            )
            layers.append(layer)
            num_in = layer.num_out
        self.wukong_layers = nn.ModuleList(layers)
        self.dnn = self.dnn_tower(
            dnn_hidden_units,
            dnn_activations,
            net_dropout,
            batch_norm,
            optional=False,
            input_dim=num_in * embedding_dim,
        )
        self.finish()

    def interact(self, feature_emb: torch.Tensor) -> torch.Tensor:
        x = feature_emb
        for layer in self.wukong_layers:
            x = layer(x)
        return x

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        tokens = self.interact(self.embed(X))
        return self.output(self.dnn(tokens.flatten(start_dim=1)))
