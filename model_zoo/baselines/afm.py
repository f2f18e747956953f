"""AFM (Xiao et al., IJCAI 2017): attentional factorization machine.

``y = w0 + sum_i w_i x_i + p^T sum_{i<j} a_ij (v_i * v_j)`` with attention scores
``a_ij = softmax_{pairs}(h^T act(W (v_i * v_j) + b))``. ``attention_dropout: [p_att, p_pool]`` drops
attention weights and the pooled vector; ``use_attention: False`` gives the paper's ablation with
uniform weights (plain sum of the pair-wise products, then ``p``).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers import MLP
from ..layers.pairwise import PairIndex


@register_model
class AFM(CTRModel):
    """AFM (Xiao et al. IJCAI 2017): LR + attention-pooled pair-wise element-wise products of field embeddings.

    Attributes: ``lr_layer`` (fuxictr LogisticRegression with bias), ``embedding_layer``
    (``field_embedding``), ``pairs`` (``PairIndex``), ``attention`` (``model_zoo.layers.MLP`` d -> A) and
    ``attention_score`` (A -> 1, no bias), ``weight_p`` (d -> 1). No DNN.
    ``forward`` = ``embed`` -> ``interact(feature_emb, feature_emb)`` -> ``attention_pool`` ->
    ``weight_p`` + ``lr_layer``; ``interact(left, right)`` gives ``left_i * right_j`` for i < j.
    """

    def __init__(
        self,
        feature_map,
        model_id="AFM",
        embedding_dim=10,
        attention_dim=10,
        attention_activation="relu",
        attention_dropout=(0.0, 0.0),
        use_attention=True,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        drops = (
            list(attention_dropout)
            if isinstance(attention_dropout, (list, tuple))
            else [attention_dropout, attention_dropout]
        )
        if len(drops) != 2:
            raise ModelConfigError(f"attention_dropout={attention_dropout!r}: give [p_attention, p_pooled]")
        self.use_attention = bool(use_attention)
        self.lr_layer = self.logistic_regression(feature_map, use_bias=True)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.pairs = PairIndex(feature_map.num_fields)
        if self.use_attention:
            self.attention = MLP(
                embedding_dim,
                hidden_units=[int(attention_dim)],
                hidden_activations=attention_activation,
                activation_options=kwargs,
            )
            self.attention_score = nn.Linear(int(attention_dim), 1, bias=False)
        self.weight_p = nn.Linear(embedding_dim, 1, bias=False)
        self.attention_dropout = nn.Dropout(float(drops[0]))
        self.pooled_dropout = nn.Dropout(float(drops[1]))
        self.finish()

    def interact(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Pair-wise interaction layer: (B, P, d) products ``left_i * right_j`` (i < j)."""
        return self.pairs.product(left, right)

    def attention_pool(self, products: torch.Tensor) -> torch.Tensor:
        if not self.use_attention:
            return self.pooled_dropout(products.sum(dim=1))
        weights = torch.softmax(self.attention_score(self.attention(products)), dim=1)  # (B, P, 1)
        pooled = (self.attention_dropout(weights) * products).sum(dim=1)
        return self.pooled_dropout(pooled)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        pooled = self.attention_pool(self.interact(feature_emb, feature_emb))
        return self.output(self.lr_layer(X) + self.weight_p(pooled))
