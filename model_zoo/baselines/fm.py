"""FM (Rendle, ICDM 2010): bias + linear weights + pairwise inner products of field embeddings."""

from .. import register_model
from ..base import CTRModel
from ..layers.pairwise import pairwise_product_sum


@register_model
class FM(CTRModel):
    """Factorization Machine: LR term plus sum over field pairs of <v_i, v_j> (2nd order).

    Attributes: ``embedding_layer``, ``lr_layer`` (first-order weights with the global bias).
    ``fm_interact(feature_emb, other_emb)`` = sum_{i<j} <feature_emb_i, other_emb_j>, so the second
    operand can be swapped (SFG's generated embeddings).
    """

    def __init__(self, feature_map, model_id="FM", embedding_dim=10, **kwargs):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.lr_layer = self.logistic_regression(feature_map, use_bias=True)
        self.finish()

    def fm_interact(self, feature_emb, other_emb=None):
        return pairwise_product_sum(feature_emb, feature_emb if other_emb is None else other_emb)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        return self.output(self.lr_layer(X) + self.fm_interact(feature_emb))
