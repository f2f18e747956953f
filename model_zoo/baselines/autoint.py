"""AutoInt (Song et al., CIKM 2019) and AutoInt+ (AutoInt with a parallel DNN).

AutoInt stacks interacting layers (multi-head self-attention over the field embeddings with a
residual connection and ReLU, ``model_zoo.layers.attention.MultiHeadSelfAttention``) and predicts
with a linear layer on the concatenated outputs of all fields:

    y = sigmoid( w . concat_m e^res_m + b  [+ LR(x) if use_wide]  [+ MLP(concat_m e_m) for AutoInt+] )

AutoInt+ is the paper's "AutoInt+" row: the same model jointly trained with a feed-forward DNN on
the embeddings, logits summed. Settings the paper leaves open follow FuxiCTR/BARS (no bias in the
attention projections, identity residual when widths match, optional scaling and LayerNorm,
optional wide LR without bias); the BARS parameter counts of FuxiCTR's AutoInt match this layout.
"""

from torch import nn

from .. import register_model
from ..base import ShallowDeepModel
from ..errors import ModelConfigError
from ..layers.attention import MultiHeadSelfAttention


@register_model
class AutoInt(ShallowDeepModel):
    """AutoInt (Song et al., CIKM 2019): stacked multi-head self-attention over field embeddings with residuals, linear output; optional wide LR and DNN.

    Attributes: ``embedding_layer`` (``field_embedding``), ``attention_layers``
    (nn.Sequential of ``MultiHeadSelfAttention``), ``fc`` (linear on the flattened attention
    output), ``lr_layer`` (fuxictr LogisticRegression without bias, only with ``use_wide``),
    ``dnn`` (``model_zoo.layers.MLP`` with one output unit, only when ``dnn_hidden_units`` is
    non-empty). ``forward`` = ``embed`` -> ``shallow_logit(X, feature_emb)`` (attention [+ LR]) +
    ``deep_logit(feature_emb)``. ``attend(feature_emb, context)`` lets the first layer's keys and
    values come from another set of embeddings.
    """

    def __init__(
        self,
        feature_map,
        model_id="AutoInt",
        embedding_dim=10,
        attention_layers=3,
        num_heads=2,
        attention_dim=64,
        use_residual=True,
        use_scale=False,
        layer_norm=False,
        residual_projection="auto",
        use_wide=False,
        dnn_hidden_units=(),
        dnn_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        if int(attention_layers) < 1:
            raise ModelConfigError(f"{type(self).__name__}: attention_layers must be at least 1")
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.attention_layers = nn.Sequential(
            *[
                MultiHeadSelfAttention(
                    embedding_dim if i == 0 else attention_dim,
                    attention_dim,
                    num_heads,
                    dropout_rate=net_dropout,
                    use_residual=use_residual,
                    use_scale=use_scale,
                    layer_norm=layer_norm,
                    residual_projection=residual_projection,
                )
                for i in range(int(attention_layers))
            ]
        )
        self.fc = nn.Linear(feature_map.num_fields * int(attention_dim), 1)
        self.lr_layer = self.logistic_regression(feature_map, use_bias=False) if use_wide else None
        self.dnn = self.dnn_tower(dnn_hidden_units, dnn_activations, net_dropout, batch_norm)
        self.finish()

    def attend(self, feature_emb, context=None):
        """Output of the interacting layers, (B, F, attention_dim)."""
        layers = list(self.attention_layers)
        hidden = layers[0](feature_emb, context)
        for layer in layers[1:]:
            hidden = layer(hidden)
        return hidden

    def attention_logit(self, feature_emb, context=None):
        return self.fc(self.attend(feature_emb, context).flatten(start_dim=1))

    def shallow_logit(self, X, feature_emb):
        """The attention logit, plus the wide LR when ``use_wide``; (B, 1)."""
        logit = self.attention_logit(feature_emb)
        if self.lr_layer is not None:
            logit = logit + self.lr_layer(X)
        return logit


@register_model
class AutoIntPlus(AutoInt):
    """AutoInt+ (Song et al., CIKM 2019): AutoInt jointly trained with a parallel DNN on the same embeddings, logits summed.

    Same attributes as ``AutoInt``; ``dnn`` is required (``dnn_hidden_units`` must be non-empty).
    """

    def __init__(self, feature_map, model_id="AutoIntPlus", dnn_hidden_units=(64, 64, 64), **kwargs):
        if not list(dnn_hidden_units or []):
            raise ModelConfigError(
                "AutoIntPlus: dnn_hidden_units is empty; AutoInt+ needs its DNN "
                "(use model: AutoInt for attention only)"
            )
        super().__init__(feature_map, model_id=model_id, dnn_hidden_units=dnn_hidden_units, **kwargs)
