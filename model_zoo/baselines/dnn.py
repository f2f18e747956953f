"""DNN: an MLP over the concatenated field embeddings (the implicit-interaction baseline)."""

from fuxictr.pytorch.layers import FeatureEmbedding

from .. import register_model
from ..base import CTRModel
from ..layers import MLP


@register_model
class DNN(CTRModel):
    """Plain MLP over flattened embeddings (YouTube-DNN style); activation from config."""

    def __init__(
        self,
        feature_map,
        model_id="DNN",
        embedding_dim=10,
        hidden_units=(64, 64, 64),
        hidden_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.mlp = MLP(
            feature_map.sum_emb_out_dim(),
            hidden_units=hidden_units,
            hidden_activations=hidden_activations,
            output_dim=1,
            dropout_rates=net_dropout,
            batch_norm=batch_norm,
            activation_options=kwargs,
        )
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X, flatten=True)
        return self.output(self.mlp(feature_emb))
