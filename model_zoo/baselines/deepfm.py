"""DeepFM (Guo et al., IJCAI 2017): a factorization machine and a DNN sharing one embedding.

    y = sigmoid( sum_k w_k x_k  +  sum_{i<j} <e_i, e_j>  +  MLP(concat_i e_i) )

The FM part is first-order LR plus the pairwise inner products of the field embeddings; the deep
part reads the same embeddings. One global bias (the DNN's output unit), as in the BARS runs of
FuxiCTR 1.x (their logged parameter counts have exactly one bias). ``lr_bias=True`` gives the first-order
LR its own bias as well (two biases: FuxiCTR 2.x's DeepFM and the SFG authors' DIS/GEN code).

The pairwise term takes its two operands explicitly: ``fm_interact(feature_emb, other_emb)``
computes sum_{i<j} <feature_emb_i, other_emb_j>, so a caller can replace the second operand of
every raw x raw product (SFG) without touching the model.
"""

from fuxictr.pytorch.layers import InnerProductInteraction

from .. import register_model
from ..base import ShallowDeepModel
from ..layers.pairwise import pairwise_product_sum


@register_model
class DeepFM(ShallowDeepModel):
    """DeepFM (Guo et al., IJCAI 2017): FM (first-order LR + pairwise inner products) + DNN on shared embeddings, logits summed.

    Attributes: ``embedding_layer`` (``field_embedding``), ``lr_layer`` (first-order term,
    fuxictr LogisticRegression, with a bias only if ``lr_bias``), ``fm_layer`` (fuxictr
    InnerProductInteraction, ``product_sum``), ``dnn`` (``model_zoo.layers.MLP`` with one output
    unit). ``forward`` = ``embed`` -> ``shallow_logit(X, feature_emb)`` (LR + ``fm_interact``) +
    ``deep_logit``.
    """

    def __init__(
        self,
        feature_map,
        model_id="DeepFM",
        embedding_dim=10,
        dnn_hidden_units=(64, 64, 64),
        dnn_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        lr_bias=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.lr_layer = self.logistic_regression(feature_map, use_bias=bool(lr_bias))
        self.fm_layer = InnerProductInteraction(feature_map.num_fields, output="product_sum")
        self.dnn = self.dnn_tower(dnn_hidden_units, dnn_activations, net_dropout, batch_norm, optional=False)
        self.finish()

    def fm_interact(self, feature_emb, other_emb=None):
        """Second-order FM term sum_{i<j} <feature_emb_i, other_emb_j> (other defaults to feature_emb)."""
        if other_emb is None:
            return self.fm_layer(feature_emb)
        return pairwise_product_sum(feature_emb, other_emb)

    def shallow_logit(self, X, feature_emb, other_emb=None):
        """The FM component: first-order LR + pairwise interactions, (B, 1)."""
        return self.lr_layer(X) + self.fm_interact(feature_emb, other_emb)
