"""DCN (Wang et al., ADKDD 2017): a cross network (v1) in parallel with a DNN.

The cross layer is x_{l+1} = x0 * (x_l . w_l) + b_l + x_l (fuxictr's ``CrossNet``); the final
logit is a linear layer on [cross output ; DNN output].
"""

import torch
from torch import nn
from fuxictr.pytorch.layers import CrossNet, FeatureEmbedding

from . import register_model
from .base import CTRModel
from .layers import MLP


@register_model
class DCN(CTRModel):
    """Deep & Cross Network v1: CrossNet(x0) || MLP(x0) -> linear -> sigmoid."""

    def __init__(self, feature_map, model_id="DCN", embedding_dim=10, dnn_hidden_units=(64, 64, 64),
                 dnn_activations="relu", num_cross_layers=3, net_dropout=0.0, batch_norm=False, **kwargs):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        input_dim = feature_map.sum_emb_out_dim()
        dnn_hidden_units = list(dnn_hidden_units or [])
        self.dnn = MLP(input_dim, hidden_units=dnn_hidden_units, hidden_activations=dnn_activations,
                       dropout_rates=net_dropout, batch_norm=batch_norm,
                       activation_options=kwargs) if dnn_hidden_units else None
        self.crossnet = CrossNet(input_dim, num_cross_layers)
        final_dim = input_dim + (dnn_hidden_units[-1] if dnn_hidden_units else 0)
        self.fc = nn.Linear(final_dim, 1)
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        x0 = self.embedding_layer(X, flatten_emb=True)
        parts = [self.crossnet(x0)]
        if self.dnn is not None:
            parts.append(self.dnn(x0))
        return self.output(self.fc(torch.cat(parts, dim=-1)))
