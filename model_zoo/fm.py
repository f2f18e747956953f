"""FM (Rendle, ICDM 2010): bias + linear weights + pairwise inner products of field embeddings."""

from fuxictr.pytorch.layers import FactorizationMachine, FeatureEmbedding

from . import register_model
from .base import CTRModel


@register_model
class FM(CTRModel):
    """Factorization Machine: LR term plus sum over field pairs of <v_i, v_j> (2nd order)."""

    def __init__(self, feature_map, model_id="FM", embedding_dim=10, **kwargs):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.fm_layer = FactorizationMachine(feature_map)
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embedding_layer(X)
        return self.output(self.fm_layer(X, feature_emb))
