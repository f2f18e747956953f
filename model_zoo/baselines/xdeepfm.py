"""xDeepFM (Lian et al., KDD 2018): Compressed Interaction Network + DNN + linear part.

    y = sigmoid( LR(x) + w_cin . [p^1; ...; p^K] + b_cin + MLP(concat_i e_i) )

CIN layer k builds the Hadamard products of every row of X^{k-1} (H_{k-1} maps) with every field
of X^0 = E (F fields), compresses the F*H_{k-1} products into H_k maps with a 1x1 convolution, and
sum-pools each map over the embedding axis into p^k (H_k values). The CIN is fuxictr's
``CompressedInteractionNet`` (its convolutions and output unit), without the paper's optional
"split half" direct connections, as in FuxiCTR/BARS. LR has no bias; the CIN and DNN output units
carry one bias each (the BARS parameter counts of FuxiCTR's xDeepFM match this layout).

``cin_logit(feature_emb, base_fn)`` runs the CIN with an explicit X^0 operand per layer:
``base_fn(k, X_prev)`` may return a replacement for X^0 in layer k (SFG's generated embeddings).
"""

import torch
from fuxictr.pytorch.layers import CompressedInteractionNet

from .. import register_model
from ..base import ShallowDeepModel
from ..errors import ModelConfigError


@register_model
class xDeepFM(ShallowDeepModel):
    """xDeepFM (Lian et al., KDD 2018): CIN (fuxictr CompressedInteractionNet, sum-pooled, no split-half) + DNN + LR, logits summed.

    Attributes: ``embedding_layer`` (``field_embedding``), ``lr_layer`` (fuxictr
    LogisticRegression without bias), ``cin`` (fuxictr CompressedInteractionNet with a 1-unit
    output), ``dnn`` (``model_zoo.layers.MLP`` with one output unit, or None when
    ``dnn_hidden_units`` is empty, i.e. the paper's CIN-only variant). ``forward`` = ``embed`` ->
    ``shallow_logit(X, feature_emb)`` (LR + ``cin_logit``) + ``deep_logit``.
    """

    def __init__(
        self,
        feature_map,
        model_id="xDeepFM",
        embedding_dim=10,
        dnn_hidden_units=(64, 64, 64),
        dnn_activations="relu",
        cin_hidden_units=(16, 16, 16),
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        cin_hidden_units = [int(u) for u in (cin_hidden_units or [])]
        if not cin_hidden_units:
            raise ModelConfigError(
                "xDeepFM: cin_hidden_units is empty; give at least one CIN layer size, "
                "e.g. cin_hidden_units: [16, 16]"
            )
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.lr_layer = self.logistic_regression(feature_map, use_bias=False)
        self.cin = CompressedInteractionNet(feature_map.num_fields, cin_hidden_units, output_dim=1)
        self.dnn = self.dnn_tower(dnn_hidden_units, dnn_activations, net_dropout, batch_norm)
        self.finish()

    def cin_logit(self, feature_emb, base_fn=None):
        """CIN logit, (B, 1). ``base_fn(k, X_prev)`` may replace X^0 (= feature_emb) in layer k."""
        if base_fn is None:
            return self.cin(feature_emb)
        batch, _, dim = feature_emb.shape
        pooled, x_prev = [], feature_emb
        for k in range(len(self.cin.cin_hidden_units)):
            base = base_fn(k, x_prev)
            base = feature_emb if base is None else base
            products = torch.einsum("bhd,bmd->bhmd", base, x_prev).reshape(batch, -1, dim)
            x_prev = self.cin.cin_layer[f"layer_{k + 1}"](products)
            pooled.append(x_prev.sum(dim=-1))
        return self.cin.fc(torch.cat(pooled, dim=-1))

    def shallow_logit(self, X, feature_emb, base_fn=None):
        """LR + CIN, (B, 1)."""
        return self.lr_layer(X) + self.cin_logit(feature_emb, base_fn)
