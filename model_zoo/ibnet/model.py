"""IBNet (Sang et al., "Optimizing Feature Interaction via Information Bottleneck for CTR Prediction",
IEEE TCSS 2025) and the IBNet framework plugged into other models (the paper's Table IX).

IBNet is a parallel DCN-v1 with three additions (paper Sec. IV-A to IV-D, following the authors' code,
which produced the published numbers):

1. every cross-layer output c_l gets a relaxed-Bernoulli mask from ONE shared linear layer M with
   logistic noise and temperature ``gate_temp``; the masked vector (filled with the batch mean) is
   concatenated with c_l and compressed back to D by ONE shared linear layer H: c~_l = H([c_l ; c_mask]);
2. the IBCL loss ``cl_weight * ibcl(C, C~)`` (``cl_temp``) is added to the BCE when ``ssl_mode``;
3. the DNN tower uses the Mice activation (``dnn_activations: mice`` / ``pbmish_avazu`` / ``pbmish_criteo``).

The cross recursion uses the un-augmented c_l; the prediction is a linear layer on [c~_L ; DNN(x0)].

Paper-vs-code switches (defaults = code): ``mask_fill: batch_mean | zero`` (eq. 5 reads zero),
``noise_at_eval: True | False`` (False: no logistic noise at evaluation, deterministic predictions),
``mask_noise_shape: dim | element`` (one noise vector per call, broadcast over the batch, or one draw per
entry), ``shared_augmentation: True | False`` (one M/H for all layers, or one per layer), and Mice's
``mice_learnable_tau``. Variants by config: ``mask_type: learned | gate | dropout | none`` (Table VI "Self
Gate" and "Random Mask(p)" with ``random_dropout: p``; ``none`` = DCN), ``ssl_mode`` (IBCL on/off) and the
DNN activation (Fig. 4 ablations, Tables VII/VIII).
"""

from __future__ import annotations

import torch
from fuxictr.pytorch.layers import CrossNet
from torch import nn

from .. import get_model_class, register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..options import check_choice
from .contrastive import ibcl_loss
from .masks import MASK_TYPES, MaskAugmentation


def _mask_type(value) -> str | None:
    key = "none" if value in (None, False) else str(value).lower()
    if key in ("none", "off"):
        return None
    return check_choice("mask_type", key, MASK_TYPES + ("none",))


class IBNetBranch(nn.Module):
    """The IBNet cross branch: CrossNet-v1 layers on x0, mask augmentation of every layer's output.

    ``forward(x0)`` returns ``(cross_embs, aug_embs)``: the per-layer c_l and c~_l (``aug_embs`` is None
    when ``mask_type`` is none). Reused by ``IBNet`` and ``IBNetFramework``.
    """

    def __init__(self, input_dim: int, num_cross_layers: int = 3, mask_type="learned", **mask_settings):
        """``mask_settings``: MaskAugmentation's settings under their config names (``MASK_SETTINGS``)."""
        super().__init__()
        if int(num_cross_layers) < 1:
            raise ModelConfigError(f"num_cross_layers={num_cross_layers} must be >= 1 for IBNet")
        self.crossnet = CrossNet(input_dim, int(num_cross_layers))
        mask_type = _mask_type(mask_type)
        self.augment = (
            None
            if mask_type is None
            else MaskAugmentation(
                input_dim,
                int(num_cross_layers),
                mask_type=mask_type,
                **{MASK_SETTINGS[k]: v for k, v in mask_settings.items()},
            )
        )

    def cross_embeddings(self, x0: torch.Tensor) -> list[torch.Tensor]:
        """c_1..c_L of the DCN-v1 recursion c_l = x0 * (c_{l-1} . w_l) + b_l + c_{l-1}."""
        outputs, c = [], x0
        for layer in self.crossnet.cross_net:
            c = c + layer(x0, c)
            outputs.append(c)
        return outputs

    def forward(self, x0: torch.Tensor):
        cross = self.cross_embeddings(x0)
        return cross, (self.augment(cross) if self.augment is not None else None)


# The settings of the branch's mask and of the IBCL loss that IBNet and IBNetFramework share (config key ->
# default); the mask's are MaskAugmentation's (``MASK_SETTINGS``: config key -> its argument).
IBNET_SETTINGS = {
    "mask_type": "learned",
    "gate_temp": 0.1,
    "mask_fill": "batch_mean",
    "noise_at_eval": True,
    "mask_noise_shape": "dim",
    "random_dropout": 0.5,
    "shared_augmentation": True,
    "ssl_mode": True,
    "cl_temp": 0.5,
    "cl_weight": 0.01,
}
MASK_SETTINGS = {
    "gate_temp": "gate_temp",
    "mask_fill": "mask_fill",
    "noise_at_eval": "noise_at_eval",
    "mask_noise_shape": "noise_shape",
    "random_dropout": "random_dropout",
    "shared_augmentation": "shared",
}


def ibnet_settings(kwargs: dict) -> dict:
    """``IBNET_SETTINGS`` taken out of a constructor's ``kwargs`` (the defaults where absent)."""
    return {key: kwargs.pop(key, default) for key, default in IBNET_SETTINGS.items()}


class _IBCLMixin:
    """``add_loss`` = the host's loss + cl_weight * IBCL(C, C~) when ssl_mode (paper Sec. IV-B)."""

    config_keys = tuple(IBNET_SETTINGS)  # read from kwargs by ``ibnet_settings``
    ssl_mode: bool
    cl_weight: float
    cl_temp: float

    def build_branch(self, input_dim: int, num_cross_layers, settings: dict) -> IBNetBranch:
        """The cross branch on ``input_dim`` inputs, and the IBCL settings (``settings``: ``ibnet_settings``)."""
        self.ssl_mode = bool(settings["ssl_mode"])
        self.cl_temp, self.cl_weight = float(settings["cl_temp"]), float(settings["cl_weight"])
        mask = {k: settings[k] for k in MASK_SETTINGS}
        return IBNetBranch(input_dim, num_cross_layers, settings["mask_type"], **mask)

    def ibcl(self, return_dict) -> torch.Tensor | None:
        if not self.ssl_mode or return_dict.get("aug_embs") is None or self.cl_weight == 0:
            return None
        return ibcl_loss(return_dict["cross_embs"], return_dict["aug_embs"], self.cl_temp)


@register_model
class IBNet(_IBCLMixin, CTRModel):
    """IBNet (Sang et al., IEEE TCSS 2025): parallel DCN-v1 + relaxed-Bernoulli cross mask + IBCL loss + Mice DNN (authors' code variant).

    Attributes: ``embedding_layer`` (``field_embedding``), ``branch`` (IBNetBranch: ``branch.crossnet``,
    ``branch.augment``), ``dnn`` (model_zoo.layers.MLP on x0, or None), ``fc`` (Linear on [c~_L ; h]).
    Returns ``cross_embs`` and ``aug_embs`` (per-layer lists) beside ``y_pred``/``logit``.
    """

    def __init__(
        self,
        feature_map,
        model_id="IBNet",
        embedding_dim=20,
        dnn_hidden_units=(400, 400, 400),
        dnn_activations="mice",
        num_cross_layers=3,
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        settings = ibnet_settings(kwargs)
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        input_dim = feature_map.sum_emb_out_dim()
        self.branch = self.build_branch(input_dim, num_cross_layers, settings)
        self.dnn = self.dnn_tower(dnn_hidden_units, dnn_activations, net_dropout, batch_norm, output_dim=None)
        self.fc = nn.Linear(input_dim + self.tower_width(dnn_hidden_units), 1)
        self.finish()

    def forward(self, inputs):
        x0 = self.embed(self.get_inputs(inputs), flatten=True)
        cross, aug = self.branch(x0)
        # the authors' code predicts from the raw c_L when there is no DNN tower
        final_cross = aug[-1] if aug is not None and self.dnn is not None else cross[-1]
        return self.output(self.cross_and_deep_logit(final_cross, x0), cross_embs=cross, aug_embs=aug)

    def add_loss(self, return_dict, y_true):
        loss = super().add_loss(return_dict, y_true)
        extra = self.ibcl(return_dict)
        return loss if extra is None else loss + self.cl_weight * extra


@register_model
class IBNetFramework(_IBCLMixin, CTRModel):
    """IBNet framework (Sang et al., IEEE TCSS 2025, Table IX) on any zoo model: base logit + linear(c~_L), plus IBCL.

    ``base_model`` names a registered model that keeps its embedding in ``self.embedding_layer``; it is
    built with the same settings (its own activations, e.g. ReLU, as the "X + IBNet" rows keep them).
    The IBNet cross branch (``num_cross_layers`` cross layers on the base's flattened embeddings, mask
    augmentation, compression) runs in parallel; its last augmented embedding adds a linear logit to the
    base logit, and ``cl_weight * IBCL`` is added to the base's own loss (paper Sec. V-G).
    Attributes: ``base``, ``branch`` (IBNetBranch), ``fc`` (Linear D -> 1).
    """

    def __init__(
        self,
        feature_map,
        model_id="IBNetFramework",
        base_model="DNN",
        num_cross_layers=3,
        **kwargs,
    ):
        settings = ibnet_settings(kwargs)
        base_cls = get_model_class(str(base_model))
        if issubclass(base_cls, (IBNet, IBNetFramework)):
            raise ModelConfigError(
                f"base_model={base_model}: IBNetFramework wraps a model without the IBNet "
                f"branch (e.g. DNN, DeepFM, AutoIntPlus, WideDeep)"
            )
        if not str(model_id).startswith("IBNetFramework"):
            model_id = f"{model_id}_IBNet"  # own checkpoint, apart from the plain base run
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.base = base_cls(
            feature_map, model_id=f"{model_id}_base", num_cross_layers=num_cross_layers, **kwargs
        )
        if not isinstance(getattr(self.base, "embedding_layer", None), nn.Module):
            raise ModelConfigError(
                f"base_model={base_model} has no field embedding named embedding_layer; "
                f"IBNetFramework needs one to attach the IBNet cross branch"
            )
        input_dim = feature_map.sum_emb_out_dim()
        self.branch = self.build_branch(input_dim, num_cross_layers, settings)
        if self.branch.augment is None:
            raise ModelConfigError("IBNetFramework needs mask_type learned, gate or dropout (not none)")
        self.fc = nn.Linear(input_dim, 1)
        self.finish()

    # ---- the base's training hooks pass through ------------------------------------------------
    def main_parameters(self):
        base_ids = {id(p) for p in self.base.parameters()}
        own = [p for p in self.parameters() if id(p) not in base_ids]
        return list(self.base.main_parameters()) + own

    def build_aux_optimizers(self) -> list:
        return self.base.build_aux_optimizers()

    def on_train_step_end(self, step: int) -> None:
        self.base.on_train_step_end(step)

    # ---- forward / loss ------------------------------------------------------------------------
    def forward(self, inputs):
        out = self.base.forward(inputs)
        x0 = self.base.embed(self.base.get_inputs(inputs), flatten=True)
        cross, aug = self.branch(x0)
        base_logit = out.get("logit")
        if base_logit is None:
            base_logit = torch.logit(out["y_pred"], eps=1e-7)
        out = dict(out)
        out.update(self.output(base_logit + self.fc(aug[-1]), cross_embs=cross, aug_embs=aug))
        return out

    def add_loss(self, return_dict, y_true):
        loss = self.base.add_loss(return_dict, y_true)
        extra = self.ibcl(return_dict)
        return loss if extra is None else loss + self.cl_weight * extra
