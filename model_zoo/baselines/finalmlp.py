"""FinalMLP and DualMLP (Mao et al., AAAI 2023): two-stream MLPs.

- DualMLP: two independent MLPs on the flattened embedding, each ending in one output unit; the
  logits are summed (the paper's simple two-stream baseline).
- FinalMLP: each stream sees its own feature-gated embedding (stream-specific feature selection,
  ``g_k = 2 sigmoid(MLP_k(context_k))`` with the embeddings of ``fs1_context`` / ``fs2_context`` as
  context, or a learnable vector when the list is empty); the two stream outputs are fused by
  multi-head bilinear fusion (``MultiHeadBilinearFusion`` below). The gates read the model's own
  embedding table (no separate context embedding).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers.fields import field_positions
from ..layers.gates import FeatureSelectionGate


class MultiHeadBilinearFusion(nn.Module):
    """Multi-head bilinear fusion of the two stream outputs (Eq. 5-6).

    Per head h (the two vectors split into ``num_heads`` equal chunks):
    ``BF(a_h, b_h) = b + w1_h^T a_h + w2_h^T b_h + a_h^T W3_h b_h``; the logit is the sum over heads.
    Summed over heads, the linear terms are one ``Linear(dim_a -> 1)`` and one ``Linear(dim_b -> 1)`` and
    the per-head biases one bias, so the parameters are ``dim_a + dim_b + 1 + num_heads * (dim_a/k) * (dim_b/k)``.
    With ``num_heads = 1`` this is the full bilinear fusion; the linear terms alone are DualMLP's sum.
    """

    def __init__(self, dim_a: int, dim_b: int, num_heads: int = 1):
        super().__init__()
        if num_heads < 1 or dim_a % num_heads or dim_b % num_heads:
            raise ModelConfigError(
                f"num_heads={num_heads} must divide both stream output widths "
                f"({dim_a} and {dim_b}); change num_heads or the last hidden units"
            )
        self.num_heads = int(num_heads)
        self.head_a, self.head_b = dim_a // num_heads, dim_b // num_heads
        self.linear_a = nn.Linear(dim_a, 1, bias=True)
        self.linear_b = nn.Linear(dim_b, 1, bias=False)
        self.bilinear = nn.Parameter(torch.empty(self.num_heads, self.head_a, self.head_b))
        self.init_weights()

    def init_weights(self):
        std = (2.0 / (self.head_a + self.head_b)) ** 0.5  # xavier-normal per head matrix
        nn.init.normal_(self.bilinear, std=std)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        batch = a.shape[0]
        a_h = a.view(batch, self.num_heads, self.head_a)
        b_h = b.view(batch, self.num_heads, self.head_b)
        bilinear = torch.einsum("bhi,hij,bhj->b", a_h, self.bilinear, b_h).unsqueeze(-1)
        return self.linear_a(a) + self.linear_b(b) + bilinear


def _streams(model: CTRModel, input_dim: int, *streams, **tower):
    """The two MLP streams, each ``model.dnn_tower(units, activations, dropout, batch_norm)`` on the same
    input (``output_dim=None``: no output unit)."""
    return [model.dnn_tower(*stream, optional=False, input_dim=input_dim, **tower) for stream in streams]


@register_model
class DualMLP(CTRModel):
    """DualMLP (Mao et al. AAAI 2023 baseline): two parallel MLPs on the embedding, logits summed.

    Attributes: ``embedding_layer`` (``field_embedding``), ``mlp1``/``mlp2`` (``model_zoo.layers.MLP``
    towers, each ending in one output unit). ``forward`` = ``embed`` -> ``mlp1(x) + mlp2(x)``.
    """

    def __init__(
        self,
        feature_map,
        model_id="DualMLP",
        embedding_dim=10,
        mlp1_hidden_units=(400, 400, 400),
        mlp1_hidden_activations="relu",
        mlp1_dropout=0.0,
        mlp1_batch_norm=False,
        mlp2_hidden_units=(400, 400, 400),
        mlp2_hidden_activations="relu",
        mlp2_dropout=0.0,
        mlp2_batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        input_dim = feature_map.num_fields * embedding_dim
        self.mlp1, self.mlp2 = _streams(
            self,
            input_dim,
            (mlp1_hidden_units, mlp1_hidden_activations, mlp1_dropout, mlp1_batch_norm),
            (mlp2_hidden_units, mlp2_hidden_activations, mlp2_dropout, mlp2_batch_norm),
        )
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        flat_emb = self.embed(X, flatten=True)
        return self.output(self.mlp1(flat_emb) + self.mlp2(flat_emb))


@register_model
class FinalMLP(CTRModel):
    """FinalMLP (Mao et al. AAAI 2023): two MLP streams with stream-specific feature-selection gates and multi-head bilinear fusion.

    Attributes: ``embedding_layer`` (``field_embedding``), ``fs_gate1``/``fs_gate2``
    (``FeatureSelectionGate`` or None when ``use_fs`` is off), ``mlp1``/``mlp2`` (the two
    ``model_zoo.layers.MLP`` streams, no output unit), ``fusion`` (``MultiHeadBilinearFusion``).
    ``forward`` = ``embed`` -> ``select_features`` -> (``mlp1`` || ``mlp2``) -> ``fusion``.
    """

    def __init__(
        self,
        feature_map,
        model_id="FinalMLP",
        embedding_dim=10,
        mlp1_hidden_units=(400, 400, 400),
        mlp1_hidden_activations="relu",
        mlp1_dropout=0.0,
        mlp1_batch_norm=False,
        mlp2_hidden_units=(400, 400, 400),
        mlp2_hidden_activations="relu",
        mlp2_dropout=0.0,
        mlp2_batch_norm=False,
        use_fs=True,
        fs_hidden_units=(64,),
        fs1_context=(),
        fs2_context=(),
        num_heads=1,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        input_dim = feature_map.num_fields * embedding_dim
        self.use_fs = bool(use_fs)
        self.fs1_index = field_positions(feature_map, list(fs1_context or []), "fs1_context")
        self.fs2_index = field_positions(feature_map, list(fs2_context or []), "fs2_context")
        if self.use_fs:
            self.fs_gate1 = self._gate(self.fs1_index, embedding_dim, input_dim, fs_hidden_units, kwargs)
            self.fs_gate2 = self._gate(self.fs2_index, embedding_dim, input_dim, fs_hidden_units, kwargs)
        else:
            self.fs_gate1 = self.fs_gate2 = None
        units1, units2 = list(mlp1_hidden_units or []), list(mlp2_hidden_units or [])
        self.mlp1, self.mlp2 = _streams(
            self,
            input_dim,
            (units1, mlp1_hidden_activations, mlp1_dropout, mlp1_batch_norm),
            (units2, mlp2_hidden_activations, mlp2_dropout, mlp2_batch_norm),
            output_dim=None,
        )
        self.fusion = MultiHeadBilinearFusion(
            units1[-1] if units1 else input_dim, units2[-1] if units2 else input_dim, int(num_heads)
        )
        self.finish()

    @staticmethod
    def _gate(index, embedding_dim, input_dim, hidden_units, options):
        context_dim = embedding_dim * max(1, len(index))
        return FeatureSelectionGate(
            context_dim,
            input_dim,
            hidden_units=hidden_units,
            use_context=bool(index),
            activation_options=options,
        )

    def select_features(self, feature_emb: torch.Tensor):
        """The two streams' inputs: the flat embedding times each stream's gate (or as is)."""
        flat_emb = feature_emb.flatten(start_dim=1)
        if not self.use_fs:
            return flat_emb, flat_emb
        batch = feature_emb.shape[0]
        inputs = []
        for gate, index in ((self.fs_gate1, self.fs1_index), (self.fs_gate2, self.fs2_index)):
            context = feature_emb[:, index].flatten(start_dim=1) if index else None
            inputs.append(flat_emb * gate(context, batch))
        return inputs[0], inputs[1]

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        x1, x2 = self.select_features(self.embed(X))
        return self.output(self.fusion(self.mlp1(x1), self.mlp2(x2)))
