"""DNN: an MLP over the concatenated field embeddings (the implicit-interaction baseline)."""

from .. import register_model
from ..base import CTRModel


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
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.mlp = self.dnn_tower(hidden_units, hidden_activations, net_dropout, batch_norm, optional=False)
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X, flatten=True)
        return self.output(self.mlp(feature_emb))
