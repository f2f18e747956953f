"""FmFM (Sun et al., WWW 2021) and FwFM (Pan et al., WWW 2018): field-aware factorization machines.

- FmFM: ``y = LR(x) + sum_{i<j} <v_i M_ij, v_j>`` with one matrix per field pair
  (``field_interaction_type: matrixed``, d x d) or a diagonal one (``vectorized``, the FvFM form).
  The pair transforms (P x d x d, or P x d) start as FuxiCTR's and the SFG authors' code start them:
  ``xavier_normal_`` over the whole tensor (std = sqrt(2 / (d*d + P*d)) for the matrices, about 0.016
  on Criteo with d = 10).
  All fields share one embedding size (the paper's field-specific sizes are not implemented).
- FwFM: ``y = b + linear + sum_{i<j} r_ij <v_i, v_j>`` with one scalar weight per field pair
  (a Linear(P -> 1) whose bias is the global bias). ``linear_type``: ``LW`` (one weight per feature,
  fuxictr's LR without bias), ``FeLV`` (``<v_i, w_i>`` with a second per-feature embedding w) or
  ``FiLV`` (``<v_i, w_F(i)>`` with one vector per field).

``regularizer`` (as in the SFG/FuxiCTR configs of these models) sets both the embedding and the net
regulariser. Pair-wise terms go through ``interact(left, right)``: ``left`` supplies the lower-index
field of each pair i < j (the side FmFM's M multiplies) and ``right`` the higher-index one.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..layers.pairwise import PairIndex
from ..options import check_choice


def _regularizers(kwargs: dict) -> dict:
    reg = kwargs.pop("regularizer", None)
    if reg is not None:
        kwargs["embedding_regularizer"] = reg
        kwargs["net_regularizer"] = reg
    return kwargs


@register_model
class FmFM(CTRModel):
    """FmFM (Sun et al. WWW 2021): LR + field-matrixed (or vectorized) pair-wise interactions <v_i M_ij, v_j>.

    Attributes: ``lr_layer`` (fuxictr LogisticRegression with bias), ``embedding_layer``
    (``field_embedding``), ``pairs`` (``PairIndex``), ``field_transform`` (P x d x d, or P x d when
    vectorized). No DNN. ``forward`` = ``embed`` -> ``interact(feature_emb, feature_emb)`` -> sum + LR.
    """

    choices = {"field_interaction_type": ("matrixed", "vectorized")}

    def __init__(
        self, feature_map, model_id="FmFM", embedding_dim=10, field_interaction_type="matrixed", **kwargs
    ):
        kwargs = _regularizers(kwargs)
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.matrixed = self.choose("field_interaction_type", field_interaction_type) == "matrixed"
        self.embedding_dim = embedding_dim
        self.lr_layer = self.logistic_regression(feature_map, use_bias=True)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.pairs = PairIndex(feature_map.num_fields)
        shape = (
            (self.pairs.num_pairs, embedding_dim, embedding_dim)
            if self.matrixed
            else (self.pairs.num_pairs, embedding_dim)
        )
        self.field_transform = nn.Parameter(torch.empty(*shape))
        self.finish()

    def init_weights(self):  # also called by BaseModel.reset_parameters
        nn.init.xavier_normal_(self.field_transform)

    def interact(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """``<left_i M_ij, right_j>`` for every pair i < j: (B, P)."""
        a, b = self.pairs.gather(left, right)
        if self.matrixed:
            a = torch.einsum("bpd,pde->bpe", a, self.field_transform)
        else:
            a = a * self.field_transform
        return (a * b).sum(dim=-1)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        interactions = self.interact(feature_emb, feature_emb).sum(dim=-1, keepdim=True)
        return self.output(self.lr_layer(X) + interactions)


@register_model
class FwFM(CTRModel):
    """FwFM (Pan et al. WWW 2018): field-pair-weighted inner products r_ij <v_i, v_j> + LW/FeLV/FiLV linear term.

    Attributes: ``embedding_layer`` (``field_embedding``), ``pairs`` (``PairIndex``), ``pair_weights``
    (Linear(P -> 1), its bias the global bias), ``lr_layer`` (LW) or ``linear_embedding`` (FeLV) or
    ``field_vectors`` (FiLV). No DNN.
    ``forward`` = ``embed`` -> ``interact(feature_emb, feature_emb)`` -> ``pair_weights`` + ``linear_term``.
    """

    def __init__(self, feature_map, model_id="FwFM", embedding_dim=10, linear_type="FiLV", **kwargs):
        kwargs = _regularizers(kwargs)
        super().__init__(feature_map, model_id=model_id, **kwargs)
        kinds = {"lw": "LW", "felv": "FeLV", "filv": "FiLV"}
        self.linear_type = kinds[check_choice("linear_type", str(linear_type).lower(), tuple(kinds), "FwFM")]
        num_fields = feature_map.num_fields
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.pairs = PairIndex(num_fields)
        self.pair_weights = nn.Linear(self.pairs.num_pairs, 1)
        if self.linear_type == "LW":
            self.lr_layer = self.logistic_regression(feature_map, use_bias=False)
        elif self.linear_type == "FeLV":
            self.linear_embedding = self.field_embedding(feature_map, embedding_dim)
        else:
            self.field_vectors = nn.Parameter(torch.empty(num_fields, embedding_dim))
        self.finish()

    def init_weights(self):
        if self.linear_type == "FiLV":
            nn.init.normal_(self.field_vectors, std=1e-4)  # the embedding initialiser's scale

    def interact(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Inner products ``<left_i, right_j>`` for every pair i < j: (B, P)."""
        return self.pairs.inner(left, right)

    def linear_term(self, X: dict, feature_emb: torch.Tensor) -> torch.Tensor:
        if self.linear_type == "LW":
            return self.lr_layer(X)
        if self.linear_type == "FeLV":
            return (feature_emb * self.embed(X, layer="linear_embedding")).sum(dim=(1, 2)).unsqueeze(-1)
        return (feature_emb * self.field_vectors).sum(dim=(1, 2)).unsqueeze(-1)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        logit = self.pair_weights(self.interact(feature_emb, feature_emb)) + self.linear_term(X, feature_emb)
        return self.output(logit)
