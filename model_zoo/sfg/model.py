"""SFG (Yin et al., "From Feature Interaction to Feature Generation: A Generative Paradigm of CTR
Prediction Models", ICML 2025): generative (GEN) versions of FM, FmFM, FwFM, CrossNet/DCNv2, DeepFM, xDeepFM
and IPNN.

In every raw x raw product one operand (the "target side") is replaced by the generated embedding
z = FeatureGenerator(E) (``generator.py`` of this package); the rest of the base model is unchanged and reused:
each ``<Model>_GEN`` class subclasses the base model and calls its own interaction method with the swapped
operand, so no base model code is copied. ``generative: False`` turns the encoders off and the class is
exactly its base model (the authors' DIS runs); ``ctrbench analyze`` uses that to compare DIS and GEN.

Following the authors' code (paper Sec. 3.2 and Table 2; docs/decisions.md, SFG): FM/DeepFM/IPNN/FwFM encode
the lower-index field of each
pair (z_i . v_j, i < j); FmFM keeps M on the raw lower-index field and encodes the higher-index one; DCNv2
and CrossNet (``model_structure: crossnet_only``) have one encoder per cross layer reading the current
layer state with a residual (z_l = gamma*ReLU(x_l W_l) + x_l) and optional dropout after each cross layer
(``sfg_cross_dropout``); xDeepFM has one encoder per CIN layer reading the raw embeddings. The encoder scale
gamma is ``sfg_gamma`` (tuned per model and dataset in the code). Not reproduced: the code's 2-layer output
head for DCNv2 (the zoo's DCNv2 head is FuxiCTR's linear layer) and its bias-free cross matrices.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..baselines.dcn import DCNv2
from ..baselines.deepfm import DeepFM
from ..baselines.fm import FM
from ..baselines.fmfm import FmFM, FwFM
from ..baselines.pnn import IPNN
from ..baselines.xdeepfm import xDeepFM
from ..layers.pairwise import pairwise_product_sum
from .generator import FeatureGenerator


class Generative:
    """Mixin: adds ``num_generators()`` SFG encoders to a zoo model before it is compiled.

    Config keys: ``generative`` (default True), ``sfg_gamma``, ``sfg_activation``, ``sfg_residual``,
    ``sfg_exclude_self``, ``sfg_field_share``, ``sfg_own_field``.
    """

    default_residual = False

    def __init__(
        self,
        feature_map,
        *args,
        embedding_dim=10,
        generative=True,
        sfg_gamma=1.0,
        sfg_activation="relu",
        sfg_residual=None,
        sfg_exclude_self=False,
        sfg_field_share=False,
        sfg_own_field=False,
        **kwargs,
    ):
        self.generative = bool(generative)
        self._sfg_dim = int(embedding_dim)
        self._sfg_options = {
            "gamma": sfg_gamma,
            "activation": sfg_activation,
            "residual": self.default_residual if sfg_residual is None else sfg_residual,
            "exclude_self": sfg_exclude_self,
            "field_share": sfg_field_share,
            "own_field": sfg_own_field,
        }
        super().__init__(feature_map, *args, embedding_dim=embedding_dim, **kwargs)

    def num_generators(self) -> int:
        return 1

    def finish(self):
        if self.generative:
            self.generators = nn.ModuleList(
                FeatureGenerator(self.feature_map.num_fields, self._sfg_dim, **self._sfg_options)
                for _ in range(self.num_generators())
            )
        super().finish()

    def generate(self, emb: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """The generated operand of layer ``layer`` (the raw operand itself when not generative)."""
        return self.generators[layer](emb) if self.generative else emb

    def analysis_operands(self, X) -> dict:
        """Tensors for ``ctrbench analyze``: ``embedding`` (the spectrum's input, (S, D)), and the two
        interacted operands ``left`` and ``right`` (redundancy), all flattened per sample."""
        emb = self.embed(X)
        gen = self.generate(emb)
        return {
            "embedding": gen.flatten(start_dim=1),
            "left": emb.flatten(start_dim=1),
            "right": gen.flatten(start_dim=1),
        }


@register_model(name="FM_GEN")
class FM_GEN(Generative, FM):
    """SFG generative FM: LR + sum_{i<j} <z_i, v_j> with z = gamma*ReLU(E W) (ICML 2025, Table 2)."""

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embed(X)
        return self.output(self.lr_layer(X) + pairwise_product_sum(self.generate(emb), emb))


@register_model(name="DeepFM_GEN")
class DeepFM_GEN(Generative, DeepFM):
    """SFG generative DeepFM: LR + sum_{i<j} <z_i, v_j> + DNN(raw embeddings) (ICML 2025, Table 2)."""

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embed(X)
        shallow = self.lr_layer(X) + pairwise_product_sum(self.generate(emb), emb)
        return self.output(shallow + self.deep_logit(emb))


@register_model(name="IPNN_GEN")
class IPNN_GEN(Generative, IPNN):
    """SFG generative IPNN: products p_ij = <z_i, v_j> (i < j), DNN on [raw E ; p] (ICML 2025, Table 2)."""

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embed(X)
        products = self.interact(self.generate(emb), emb)
        return self.output(self.dnn(self.dnn_input(emb, products)))


@register_model(name="FmFM_GEN")
class FmFM_GEN(Generative, FmFM):
    """SFG generative FmFM: LR + sum_{i<j} <v_i M_ij, z_j> (M on the raw side; ICML 2025, Table 2)."""

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embed(X)
        interactions = self.interact(emb, self.generate(emb)).sum(dim=-1, keepdim=True)
        return self.output(self.lr_layer(X) + interactions)


@register_model(name="FwFM_GEN")
class FwFM_GEN(Generative, FwFM):
    """SFG generative FwFM (authors' code only): sum_{i<j} r_ij <z_i, v_j> + bias + linear term."""

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embed(X)
        logit = self.pair_weights(self.interact(self.generate(emb), emb)) + self.linear_term(X, emb)
        return self.output(logit)


@register_model(name="xDeepFM_GEN")
class xDeepFM_GEN(Generative, xDeepFM):
    """SFG generative xDeepFM: CIN layer k interacts z^(k) = enc_k(raw E) with X^(k-1); LR and DNN unchanged."""

    def num_generators(self) -> int:
        return len(self.cin.cin_hidden_units)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embed(X)
        base_fn = (lambda k, x_prev: self.generate(emb, k)) if self.generative else None
        return self.output(self.shallow_logit(X, emb, base_fn) + self.deep_logit(emb))


@register_model(name="DCNv2_GEN")
class DCNv2_GEN(Generative, DCNv2):
    """SFG generative DCNv2 / CrossNet (``model_structure: crossnet_only``): layer l crosses z_l with x_l,
    z_l = gamma*ReLU(x_l W_l) + x_l from the current layer state; DNN branch unchanged."""

    default_residual = True

    def __init__(self, feature_map, *args, sfg_cross_dropout=0.0, **kwargs):
        self._cross_dropout = float(sfg_cross_dropout)
        super().__init__(feature_map, *args, **kwargs)

    def num_generators(self) -> int:
        return self.crossnet_depth

    def finish(self):
        self.cross_dropout = nn.Dropout(self._cross_dropout) if self._cross_dropout > 0 else nn.Identity()
        super().finish()

    def cross_layers(self, x0):
        """Per layer: (left operand, state x_l), and the final state."""
        operands, x_l = [], x0
        for layer in range(self.crossnet_depth):
            operand = self.generate(x_l, layer) if self.generative else x0
            operands.append((operand, x_l))
            x_l = self.cross_dropout(self._cross_layer(layer, operand, x_l))
        return operands, x_l

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        x0 = self.embed(X, flatten=True)
        _, cross_out = self.cross_layers(x0)
        return self.output(self.fc(self.combine(cross_out, x0)))

    def analysis_operands(self, X) -> dict:
        x0 = self.embed(X, flatten=True)
        operands, _ = self.cross_layers(x0)
        left0, state0 = operands[0]
        right0 = self.crossnet.cross_layers[0](state0) if not self.use_low_rank_mixture else state0
        return {"embedding": torch.cat([op for op, _ in operands], dim=0), "left": left0, "right": right0}


GEN_OF = {
    "FM": "FM_GEN",
    "DeepFM": "DeepFM_GEN",
    "IPNN": "IPNN_GEN",
    "FmFM": "FmFM_GEN",
    "FwFM": "FwFM_GEN",
    "xDeepFM": "xDeepFM_GEN",
    "DCNv2": "DCNv2_GEN",
}
