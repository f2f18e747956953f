"""Feature gates shared by the zoo: FinalMLP's stream-wise feature selection and FinalNet's field gate.

- ``FeatureSelectionGate`` (FinalMLP, Mao et al. AAAI 2023, Sec. "Stream-specific feature
  selection"): ``g = 2 * sigmoid(MLP(context))`` of the width of the flattened embedding, multiplied
  into it. The context is the embeddings of the stream's conditional features; with none, it is a
  learnable vector (zero at init), i.e. an instance-independent gate.
- ``FieldGate`` (FinalNet, Zhu et al. SIGIR 2023, feature gating before the first FINAL block):
  gates computed by a linear map across the field axis (shared over embedding dimensions),
  initialised to all ones, applied as ``E * G`` and combined with ``E`` by ``concat`` (2n fields) or
  ``sum``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..options import check_choice
from .mlp import MLP


class FeatureSelectionGate(nn.Module):
    """``2 * sigmoid(MLP(context))`` -> (B, output_dim); ``context`` is (B, c) or ``None``."""

    def __init__(
        self,
        context_dim: int,
        output_dim: int,
        hidden_units=(),
        hidden_activations="relu",
        use_context: bool = True,
        activation_options=None,
    ):
        super().__init__()
        self.use_context = bool(use_context)
        self.context_dim = int(context_dim)
        if not self.use_context:
            self.context_bias = nn.Parameter(torch.zeros(1, self.context_dim))
        self.mlp = MLP(
            self.context_dim,
            hidden_units=list(hidden_units or []),
            hidden_activations=hidden_activations,
            output_dim=output_dim,
            activation_options=activation_options,
        )

    def init_weights(self):
        if not self.use_context:
            nn.init.zeros_(self.context_bias)

    def forward(self, context: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        if not self.use_context:
            context = self.context_bias.expand(batch_size, -1)
        return 2.0 * torch.sigmoid(self.mlp(context))


class FieldGate(nn.Module):
    """FinalNet's feature gating over (B, n, d) embeddings; output (B, n or 2n, d)."""

    def __init__(self, num_fields: int, residual_type: str = "concat"):
        super().__init__()
        self.residual_type = check_choice("residual_type", residual_type, ("concat", "sum"))
        self.num_fields = int(num_fields)
        self.linear = nn.Linear(self.num_fields, self.num_fields)

    @property
    def num_output_fields(self) -> int:
        return 2 * self.num_fields if self.residual_type == "concat" else self.num_fields

    def init_weights(self):  # after BaseModel's xavier pass: gates start at exactly 1
        nn.init.zeros_(self.linear.weight)
        nn.init.ones_(self.linear.bias)

    def forward(self, feature_emb: torch.Tensor) -> torch.Tensor:
        gates = self.linear(feature_emb.transpose(1, 2)).transpose(1, 2)
        gated = feature_emb * gates
        if self.residual_type == "concat":
            return torch.cat([feature_emb, gated], dim=1)
        return feature_emb + gated
