"""DLRM (Naumov et al., arXiv:1906.00091, 2019): bottom MLP, dot interaction, top MLP.

- The numeric fields, concatenated, go through the bottom MLP (every layer activated, the last one
  included) to one dense vector of the embedding size; categorical/sequence fields are embedded.
- ``interaction_op: dot``: the pair-wise dot products of [dense vector ; field embeddings]
  (pairs i < j, no self products), concatenated with the dense vector.
  ``interaction_op: cat``: all vectors concatenated.
- The top MLP (``top_mlp_units``, then one output unit) maps that to the logit.

With the MaskFusion paper's Criteo-Kaggle setting (26 categorical fields with the full DLRM vocab,
13 numeric, d = 16, bottom [512, 256, 64, 16], top [512, 256]) the model has 540,677,217 parameters
(MaskFusion paper Sec. 4.4, Table 3).
"""

from __future__ import annotations

import torch

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers import MLP
from ..layers.fields import fields_of_type
from ..layers.pairwise import PairIndex


@register_model
class DLRM(CTRModel):
    """DLRM (Naumov et al. 2019): bottom MLP on numeric fields, dot (or cat) interaction with the embeddings, top MLP.

    Attributes: ``embedding_layer`` (``field_embedding`` of the non-numeric fields), ``bottom_mlp``
    (``model_zoo.layers.MLP`` or None without numeric fields), ``pairs`` (``PairIndex`` over the
    dense vector + fields), ``dnn`` (the top MLP, ``model_zoo.layers.MLP`` ending in the output unit).
    ``forward`` = ``embed`` + ``dense_vector`` -> ``interact(tokens, tokens)`` -> ``dnn_input`` -> ``dnn``;
    ``interact(left, right)`` gives ``<left_i, right_j>`` for i < j (token 0 is the dense vector).
    """

    choices = {"interaction_op": ("dot", "cat")}

    def __init__(
        self,
        feature_map,
        model_id="DLRM",
        embedding_dim=16,
        bottom_mlp_units=(64, 16),
        bottom_mlp_activations="relu",
        bottom_mlp_dropout=0.0,
        top_mlp_units=(512, 256),
        top_mlp_activations="relu",
        top_mlp_dropout=0.0,
        batch_norm=False,
        interaction_op="dot",
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.interaction_op = self.choose("interaction_op", interaction_op)
        self.numeric_fields = fields_of_type(feature_map, "numeric")
        sparse_fields = [f for f in fields_of_type(feature_map, "categorical", "sequence", "embedding")]
        self.embedding_layer = (
            self.field_embedding(feature_map, embedding_dim, not_required_feature_columns=self.numeric_fields)
            if sparse_fields
            else None
        )
        bottom = [int(u) for u in (bottom_mlp_units or [])]
        if self.numeric_fields:
            if not bottom or bottom[-1] != embedding_dim:
                raise ModelConfigError(
                    f"bottom_mlp_units={bottom} must end in embedding_dim={embedding_dim} "
                    f"(the dense vector joins the embeddings); e.g. [64, {embedding_dim}]"
                )
            self.bottom_mlp = MLP(
                len(self.numeric_fields),
                hidden_units=bottom,
                hidden_activations=bottom_mlp_activations,
                dropout_rates=bottom_mlp_dropout,
                batch_norm=batch_norm,
                activation_options=kwargs,
            )
        else:
            self.bottom_mlp = None
        num_tokens = len(sparse_fields) + (1 if self.numeric_fields else 0)
        self.pairs = PairIndex(num_tokens)
        if interaction_op == "dot":
            top_input = self.pairs.num_pairs + (embedding_dim if self.numeric_fields else 0)
        else:
            top_input = num_tokens * embedding_dim
        self.dnn = self.dnn_tower(
            top_mlp_units,
            top_mlp_activations,
            top_mlp_dropout,
            batch_norm,
            optional=False,
            input_dim=top_input,
        )
        self.finish()

    def dense_vector(self, X: dict) -> torch.Tensor | None:
        if self.bottom_mlp is None:
            return None
        dense = torch.cat([X[name].float().view(-1, 1) for name in self.numeric_fields], dim=-1)
        return self.bottom_mlp(dense)

    def tokens(self, X: dict, dense: torch.Tensor | None) -> torch.Tensor:
        """(B, T, d): the dense vector (when there are numeric fields) first, then the field embeddings."""
        parts = []
        if dense is not None:
            parts.append(dense.unsqueeze(1))
        if self.embedding_layer is not None:
            parts.append(self.embed(X))
        return torch.cat(parts, dim=1)

    def interact(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Pair-wise dot products ``<left_i, right_j>`` (i < j): (B, T(T-1)/2)."""
        return self.pairs.inner(left, right)

    def dnn_input(self, tokens: torch.Tensor, dense: torch.Tensor | None) -> torch.Tensor:
        if self.interaction_op == "cat":
            return tokens.flatten(start_dim=1)
        dots = self.interact(tokens, tokens)
        return torch.cat([dense, dots], dim=-1) if dense is not None else dots

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        dense = self.dense_vector(X)
        tokens = self.tokens(X, dense)
        return self.output(self.dnn(self.dnn_input(tokens, dense)))
