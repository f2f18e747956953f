"""AFN and AFN+ (Cheng, Shan, Huang, AAAI 2020): Adaptive Factorization Network.

A logarithmic transformation layer learns arbitrary-order cross features: logarithmic neuron j
outputs the d-dimensional vector

    y_j = exp( sum_i w_ij * ln|e_i| )   = prod_i |e_i| ** w_ij   (element-wise over d)

with |e_i| clamped to a small positive value before the log. Batch normalisation is applied to the
log-embeddings (over fields) and to the exponentiated outputs (over neurons), as in the paper. The
N neuron outputs are concatenated (N*d) and fed to feed-forward layers ending in one logit.

AFN+ ensembles AFN with a DNN that has its own embeddings; the two logits are combined by a
learned linear unit: y = sigmoid( w_1 z_AFN + w_2 z_DNN + b ). The BARS parameter counts of
FuxiCTR's AFN (coefficient matrix without bias, both BNs, two embedding tables for AFN+, a 2->1
output unit) match this layout exactly.
"""

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError


@register_model
class AFN(CTRModel):
    """AFN (Cheng et al., AAAI 2020): logarithmic neurons (ln of clamped |e|, linear over fields, exp) with BN, then an MLP; ensemble_dnn gives AFN+.

    Attributes: ``embedding_layer`` (``field_embedding`` for the AFN tower),
    ``log_coefficients`` (nn.Linear F -> N without bias: w_ij), ``log_batch_norm`` (BN over
    fields), ``exp_batch_norm`` (BN over neurons), ``afn_mlp`` (``model_zoo.layers.MLP`` ending in
    one unit), and with ``ensemble_dnn``: ``dnn_embedding_layer``, ``dnn`` (``MLP`` with one
    output unit), ``fc`` (nn.Linear 2 -> 1). ``forward`` = ``embed`` -> ``shallow_logit`` (AFN
    tower) [-> ``fc([shallow, deep_logit(X)])``].
    """

    def __init__(
        self,
        feature_map,
        model_id="AFN",
        embedding_dim=10,
        logarithmic_neurons=400,
        afn_hidden_units=(64, 64, 64),
        afn_activations="relu",
        afn_dropout=0.0,
        ensemble_dnn=False,
        dnn_hidden_units=(64, 64, 64),
        dnn_activations="relu",
        dnn_dropout=0.0,
        batch_norm=False,
        log_clamp_min=1e-7,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        num_fields = feature_map.num_fields
        self.embedding_dim, self.log_clamp_min = int(embedding_dim), float(log_clamp_min)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.log_coefficients = nn.Linear(num_fields, int(logarithmic_neurons), bias=False)
        self.log_batch_norm = nn.BatchNorm1d(num_fields)
        self.exp_batch_norm = nn.BatchNorm1d(int(logarithmic_neurons))
        self.afn_mlp = self.dnn_tower(
            afn_hidden_units,
            afn_activations,
            afn_dropout,
            batch_norm,
            optional=False,
            input_dim=int(logarithmic_neurons) * self.embedding_dim,
        )
        self.ensemble_dnn = bool(ensemble_dnn)
        self.dnn_embedding_layer = self.dnn = self.fc = None
        if self.ensemble_dnn:
            dnn_hidden_units = list(dnn_hidden_units or [])
            if not dnn_hidden_units:
                raise ModelConfigError(
                    f"{type(self).__name__}: ensemble_dnn needs non-empty dnn_hidden_units"
                )
            self.dnn_embedding_layer = self.field_embedding(feature_map, embedding_dim)
            self.dnn = self.dnn_tower(dnn_hidden_units, dnn_activations, dnn_dropout, batch_norm)
            self.fc = nn.Linear(2, 1)
        self.finish()

    def logarithmic_net(self, feature_emb):
        """Logarithmic transformation layer: (B, F, d) -> (B, N*d)."""
        log_emb = torch.log(feature_emb.abs().clamp(min=self.log_clamp_min))
        log_emb = self.log_batch_norm(log_emb)  # BN over the F fields
        crosses = self.log_coefficients(log_emb.transpose(1, 2))  # (B, d, N)
        cross_emb = self.exp_batch_norm(torch.exp(crosses).transpose(1, 2))  # (B, N, d), BN over N
        return cross_emb.flatten(start_dim=1)

    def shallow_logit(self, feature_emb):
        """The AFN tower's logit, (B, 1)."""
        return self.afn_mlp(self.logarithmic_net(feature_emb))

    def deep_logit(self, X):
        """The ensemble DNN's logit on its own embeddings, (B, 1)."""
        return self.dnn(self.embed(X, flatten=True, layer="dnn_embedding_layer"))

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        logit = self.shallow_logit(self.embed(X))
        if self.ensemble_dnn:
            logit = self.fc(torch.cat([logit, self.deep_logit(X)], dim=-1))
        return self.output(logit)


@register_model
class AFNPlus(AFN):
    """AFN+ (Cheng et al., AAAI 2020): AFN ensembled with a DNN on separate embeddings, logits combined by a 2->1 linear unit.

    Same attributes as ``AFN`` with ``ensemble_dnn`` always on.
    """

    def __init__(self, feature_map, model_id="AFNPlus", **kwargs):
        kwargs["ensemble_dnn"] = True
        super().__init__(feature_map, model_id=model_id, **kwargs)
