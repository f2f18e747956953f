"""CL4CTR (Wang et al., WSDM 2023): contrastive learning and field constraints for CTR embeddings.

The predictor is a backbone CTR model on the un-augmented embeddings; during training a contrastive
module (CM) and two embedding constraints regularise the shared embedding table:

- augmentation: two views of the embedding matrix E (B, n, d) by ``cl_augmentation``:
  ``random`` (element-wise random mask, i.e. inverted dropout with rate ``cl_mask_ratio``),
  ``feature`` (whole field embeddings zeroed with that probability) or ``dimension`` (the same
  embedding dimensions zeroed in every field);
- a feature-interaction encoder shared by both views (``cl_encoder``: ``mlp`` = an MLP on the
  flattened view, as in the FuxiCTR-style port the TF4CTR/IBNet authors ran (docs/decisions.md,
  TF4CTR); or ``transformer`` = self-attention layers over the fields, the paper's choice), followed by
  one linear projector per view;
- contrastive loss ``L_cl = mean_b ||p1_b - p2_b||^2`` between the projected views;
- feature alignment ``L_a``: squared distance between embeddings of the same field, averaged over
  all pairs of the batch's feature occurrences in that field and over fields;
- field uniformity ``L_u``: cosine similarity between embeddings of different fields, averaged over
  all cross-field pairs of the batch's feature occurrences;
- loss = BCE + ``cl_weight`` * L_cl + ``cl_field_weight`` * (L_a + L_u).

The CM runs on the same forward pass (its views are returned by ``forward`` in training mode only)
and is unused at inference; it costs parameters but no prediction time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers import MLP

AUGMENTATIONS = ("random", "feature", "dimension")


def augment(feature_emb: torch.Tensor, kind: str, ratio: float) -> torch.Tensor:
    """One random view of (B, n, d) embeddings."""
    if ratio <= 0:
        return feature_emb
    batch, fields, dim = feature_emb.shape
    if kind == "random":
        return F.dropout(feature_emb, p=ratio, training=True)
    if kind == "feature":
        keep = (torch.rand(batch, fields, 1, device=feature_emb.device) >= ratio).to(feature_emb.dtype)
    else:  # dimension
        keep = (torch.rand(batch, 1, dim, device=feature_emb.device) >= ratio).to(feature_emb.dtype)
    return feature_emb * keep


def alignment_loss(feature_emb: torch.Tensor) -> torch.Tensor:
    """Mean over fields of the mean squared distance between all pairs of that field's embeddings.

    For one field, mean_{b,b'} ||e_b - e_b'||^2 = 2 (mean_b ||e_b||^2 - ||mean_b e_b||^2).
    """
    mean_sq = feature_emb.pow(2).sum(dim=-1).mean(dim=0)  # (n,)
    sq_mean = feature_emb.mean(dim=0).pow(2).sum(dim=-1)  # (n,)
    return (2.0 * (mean_sq - sq_mean)).mean()


def uniformity_loss(feature_emb: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean cosine similarity over all pairs of embeddings from different fields in the batch."""
    batch, fields, _ = feature_emb.shape
    if fields < 2:
        return feature_emb.new_zeros(())
    unit = feature_emb / feature_emb.norm(dim=-1, keepdim=True).clamp_min(eps)
    per_field = unit.sum(dim=0)  # (n, d)
    total = per_field.sum(dim=0)  # (d,)
    cross = total.pow(2).sum() - per_field.pow(2).sum()
    return cross / (batch * batch * fields * (fields - 1))


class FieldSelfAttentionEncoder(nn.Module):
    """Transformer encoder layers over the n field embeddings; output flattened to (B, n*d)."""

    def __init__(self, embedding_dim: int, num_layers: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embedding_dim % num_heads:
            raise ModelConfigError(
                f"cl_num_heads={num_heads} must divide embedding_dim={embedding_dim} "
                f"for cl_encoder transformer"
            )
        layer = nn.TransformerEncoderLayer(
            embedding_dim, num_heads, dim_feedforward=2 * embedding_dim, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        return self.encoder(view).flatten(start_dim=1)


@register_model
class CL4CTR(CTRModel):
    """CL4CTR (Wang et al. WSDM 2023): DNN backbone + contrastive module + feature alignment/field uniformity losses.

    Attributes: ``embedding_layer`` (``field_embedding``, shared by predictor and CM), ``dnn`` (the
    backbone predictor, ``model_zoo.layers.MLP`` ending in the output unit), ``cl_encoder`` (shared
    FI encoder of the CM), ``projector1``/``projector2`` (one linear projector per view).
    ``forward`` = ``embed`` -> ``dnn`` for the logit, plus ``contrastive_views`` in training mode;
    ``add_loss`` adds the CM and constraint losses from the returned tensors.
    """

    choices = {"cl_augmentation": AUGMENTATIONS}

    def __init__(
        self,
        feature_map,
        model_id="CL4CTR",
        embedding_dim=10,
        dnn_hidden_units=(400, 400, 400),
        dnn_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        cl_weight=1.0,
        cl_field_weight=0.01,
        cl_augmentation="random",
        cl_mask_ratio=0.1,
        cl_encoder="mlp",
        cl_encoder_units=(400,),
        cl_encoder_activations="relu",
        cl_num_layers=1,
        cl_num_heads=1,
        cl_projection_dim=None,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.choose("cl_augmentation", cl_augmentation)
        if not 0.0 <= float(cl_mask_ratio) < 1.0:
            raise ModelConfigError(f"cl_mask_ratio={cl_mask_ratio} must be in [0, 1)")
        self.cl_weight, self.cl_field_weight = float(cl_weight), float(cl_field_weight)
        self.cl_augmentation, self.cl_mask_ratio = cl_augmentation, float(cl_mask_ratio)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        input_dim = feature_map.num_fields * embedding_dim
        self.dnn = self.dnn_tower(
            dnn_hidden_units, dnn_activations, net_dropout, batch_norm, optional=False, input_dim=input_dim
        )
        if cl_encoder == "mlp":
            units = list(cl_encoder_units or [])
            self.cl_encoder = MLP(
                input_dim,
                hidden_units=units,
                hidden_activations=cl_encoder_activations,
                activation_options=kwargs,
            )
            encoded_dim = units[-1] if units else input_dim
        elif cl_encoder == "transformer":
            self.cl_encoder = FieldSelfAttentionEncoder(embedding_dim, int(cl_num_layers), int(cl_num_heads))
            encoded_dim = input_dim
        else:
            raise ModelConfigError(f"cl_encoder={cl_encoder!r}: use mlp or transformer")
        self.cl_encoder_type = cl_encoder
        projection_dim = int(cl_projection_dim or encoded_dim)
        self.projector1 = nn.Linear(encoded_dim, projection_dim)
        self.projector2 = nn.Linear(encoded_dim, projection_dim)
        self.finish()

    def encode_view(self, view: torch.Tensor) -> torch.Tensor:
        if self.cl_encoder_type == "mlp":
            return self.cl_encoder(view.flatten(start_dim=1))
        return self.cl_encoder(view)

    def contrastive_views(self, feature_emb: torch.Tensor) -> dict:
        """Two augmented views through the shared encoder and their own projectors."""
        view1 = augment(feature_emb, self.cl_augmentation, self.cl_mask_ratio)
        view2 = augment(feature_emb, self.cl_augmentation, self.cl_mask_ratio)
        return {
            "cl_view1": self.projector1(self.encode_view(view1)),
            "cl_view2": self.projector2(self.encode_view(view2)),
            "feature_emb": feature_emb,
        }

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        logit = self.dnn(feature_emb.flatten(start_dim=1))
        extra = self.contrastive_views(feature_emb) if self.training else {}
        return self.output(logit, **extra)

    def add_loss(self, return_dict, y_true):
        loss = super().add_loss(return_dict, y_true)
        if "cl_view1" not in return_dict:
            return loss
        if self.cl_weight:
            diff = return_dict["cl_view1"] - return_dict["cl_view2"]
            loss = loss + self.cl_weight * diff.pow(2).sum(dim=-1).mean()
        if self.cl_field_weight:
            emb = return_dict["feature_emb"]
            loss = loss + self.cl_field_weight * (alignment_loss(emb) + uniformity_loss(emb))
        return loss
