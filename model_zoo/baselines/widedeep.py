"""Wide & Deep (Cheng et al., DLRS 2016): a wide linear model and a deep MLP trained jointly.

The paper's wide part is a generalised linear model over raw and hand-crafted cross-product
features; like FuxiCTR/BARS, the wide part here is logistic regression over the raw features only
(one weight per feature value). The deep part is an MLP over the concatenated field embeddings.
The two logits are summed before the sigmoid: y = sigmoid(w_wide . x + MLP(e) ).
"""

from .. import register_model
from ..base import CTRModel


@register_model
class WideDeep(CTRModel):
    """Wide & Deep (Cheng et al., DLRS 2016): LR over raw features + DNN over embeddings, logits summed (no cross-product columns, as in FuxiCTR/BARS).

    Attributes: ``embedding_layer`` (``field_embedding``), ``lr_layer`` (wide part: fuxictr
    LogisticRegression without bias; the DNN's output unit carries the single global bias), ``dnn``
    (``model_zoo.layers.MLP`` ending in one output unit). ``forward`` = ``embed`` ->
    ``shallow_logit(X)`` + ``deep_logit(feature_emb)``.
    """

    def __init__(
        self,
        feature_map,
        model_id="WideDeep",
        embedding_dim=10,
        dnn_hidden_units=(64, 64, 64),
        dnn_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.lr_layer = self.logistic_regression(feature_map, use_bias=False)
        self.dnn = self.dnn_tower(dnn_hidden_units, dnn_activations, net_dropout, batch_norm, optional=False)
        self.finish()

    def shallow_logit(self, X):
        """The wide part: sum of the per-feature weights, (B, 1)."""
        return self.lr_layer(X)

    def deep_logit(self, feature_emb):
        """The deep part on the flattened embeddings, (B, 1)."""
        return self.dnn(feature_emb.flatten(start_dim=1))

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        return self.output(self.shallow_logit(X) + self.deep_logit(feature_emb))
