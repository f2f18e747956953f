"""TF4CTR (Li et al., "TF4CTR: Twin Focus Framework for CTR Prediction via Adaptive Sample
Differentiation", arXiv 2405.03167): SSEM -> simple / complex encoders -> DFM, trained with BCE plus
the Twin Focus loss (model_zoo/layers/twin_focus.py).

Building blocks (spec tf4ctr.md §2-§4), all in this file:

- ``make_ssem``: Sample Selection Embedding Module, ``SSM`` in {share (= none), SER, GM, MoE}; returns
  the flattened easy / hard embeddings (h_es, h_hs).
- ``DynamicFusion``: ``DFM`` in {sum (= none), WSF, VF, CF, MoEF}; owns the two logit heads and returns
  (z, z_s, z_c).

Config keys keep the authors' names (``SSM``, ``DFM``, ``easy_hidden_units``, ``hard_hidden_units``,
``alpha``, ``c``, ``gamma``) so their logged runs replay as expids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from fuxictr.pytorch.layers import FeatureEmbedding

from . import register_model
from .base import CTRModel
from .layers import MLP
from .layers.twin_focus import TwinFocusLoss, TwinFocusLossMixin

SSEM_NAMES = {"share": "share", "none": "share", "ser": "ser", "gm": "gm", "gate": "gm", "moe": "moe",
              "mmoe": "moe"}
DFM_NAMES = {"sum": "sum", "none": "sum", "wsf": "wsf", "vf": "vf", "cf": "cf", "moef": "moef"}


def _choice(value, table: dict, key: str, model: str) -> str:
    from benchmark.errors import CTRBenchError

    name = str(value).lower() if value is not None else "none"
    if name not in table:
        raise CTRBenchError(f"{model}: {key}={value!r} is not supported; choose one of "
                            f"{', '.join(sorted(set(table)))}")
    return table[name]


def embedding_width(feature_map, embedding_dim: int) -> int:
    """Width of the flattened embedding of all non-meta fields at ``embedding_dim`` (per-field dims win)."""
    total = 0
    for spec in feature_map.features.values():
        if spec["type"] != "meta":
            total += spec.get("emb_output_dim", spec.get("embedding_dim", embedding_dim))
    return total


# ---- SSEM -----------------------------------------------------------------------------------------
class ShareSSEM(nn.Module):
    """One table; both encoders see the same flattened embedding ("Share", authors' ``SSM: none``)."""

    def __init__(self, feature_map, embedding_dim, **_):
        super().__init__()
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.easy_dim = self.hard_dim = embedding_width(feature_map, embedding_dim)
        self.easy_field_dim = self.hard_field_dim = embedding_dim

    def forward(self, X):
        h = self.embedding_layer(X, flatten_emb=True)
        return h, h


class SERSSEM(nn.Module):
    """Separate Embedding Representations (Eq. 3): an easy and a hard table over the same vocabularies.

    The easy table has ``easy_embedding_dim`` (default ``embedding_dim // 2`` as in the authors' code and
    logs; the paper gives both tables the same dim: set ``easy_embedding_dim`` = ``embedding_dim``).
    """

    def __init__(self, feature_map, embedding_dim, easy_embedding_dim=None, **_):
        super().__init__()
        easy = int(easy_embedding_dim or max(1, embedding_dim // 2))
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.easy_embedding_layer = FeatureEmbedding(feature_map, easy)
        self.hard_dim = embedding_width(feature_map, embedding_dim)
        self.easy_dim = embedding_width(feature_map, easy)
        self.easy_field_dim, self.hard_field_dim = easy, embedding_dim

    def forward(self, X):
        return (self.easy_embedding_layer(X, flatten_emb=True), self.embedding_layer(X, flatten_emb=True))


class GateSSEM(ShareSSEM):
    """Gating Mechanism (Eq. 4): g = sigmoid(Linear(Block(D -> D/4)(h))); h_es = g*h, h_hs = (1-g)*h."""

    def __init__(self, feature_map, embedding_dim, hidden_activations="relu", net_dropout=0.0, batch_norm=True,
                 **_):
        super().__init__(feature_map, embedding_dim)
        D = self.hard_dim
        self.gate = MLP(D, hidden_units=[max(1, D // 4)], hidden_activations=hidden_activations, output_dim=1,
                        dropout_rates=net_dropout, batch_norm=batch_norm)

    def forward(self, X):
        h = self.embedding_layer(X, flatten_emb=True)
        g = torch.sigmoid(self.gate(h))
        return g * h, (1 - g) * h


class MoESSEM(ShareSSEM):
    """Two experts Block(D -> D/2) -> Block(D/2 -> D) and two softmax gates Linear(Block(D -> D/4)) (Eq. 5)."""

    def __init__(self, feature_map, embedding_dim, hidden_activations="relu", net_dropout=0.0, batch_norm=True,
                 **_):
        super().__init__(feature_map, embedding_dim)
        D = self.hard_dim
        block = dict(hidden_activations=hidden_activations, dropout_rates=net_dropout, batch_norm=batch_norm)
        self.experts = nn.ModuleList(MLP(D, hidden_units=[max(1, D // 2), D], **block) for _ in range(2))
        self.gates = nn.ModuleList(MLP(D, hidden_units=[max(1, D // 4)], output_dim=2, **block)
                                   for _ in range(2))

    def forward(self, X):
        h = self.embedding_layer(X, flatten_emb=True)
        experts = torch.stack([e(h) for e in self.experts], dim=1)            # (B, 2, D)
        outs = [torch.einsum("be,bed->bd", torch.softmax(g(h), dim=-1), experts) for g in self.gates]
        return outs[0], outs[1]


_SSEM = {"share": ShareSSEM, "ser": SERSSEM, "gm": GateSSEM, "moe": MoESSEM}


def make_ssem(name, feature_map, embedding_dim, model="TF4CTR", **options) -> nn.Module:
    return _SSEM[_choice(name, SSEM_NAMES, "SSM", model)](feature_map, embedding_dim, **options)


# ---- DFM ------------------------------------------------------------------------------------------
class DynamicFusion(nn.Module):
    """Dynamic Fusion Module (Eqs. 8-11) over the encoders' outputs h_s (width H_s) and h_c (H_c).

    z_s = simple_head(h_s), z_c = complex_head(h_c) (Linear(., 1) with bias unless given) feed the TF
    loss; the fused logit z is
      sum:  z_s + z_c                      wsf:  w1 z_s + w2 z_c, (w1, w2) learnable, init 0.5
      vf:   p_s z_s + p_c z_c, (p_s, p_c) = softmax(([pi_s, pi_c] + G) / tau), pi = Linear(., 1)(h),
            G ~ Gumbel(0, 1) (the code uses pi as the Gumbel logits; the paper's log(pi) is undefined for
            pi < 0). Noise is drawn in training; at evaluation only with ``vf_eval_noise`` (the authors'
            code always draws it, which makes inference stochastic; default here: softmax(pi / tau)).
      cf:   Linear(H_s + H_c, 1)([h_s || h_c])
      moef: sum_k softmax(W_g u)_k (W_m u)_k, u = [h_s || h_c], W_g, W_m: Linear(H_s + H_c, 2)
    """

    def __init__(self, kind, simple_dim, complex_dim, vf_tau=0.8, vf_eval_noise=False, simple_head=None,
                 complex_head=None, model="TF4CTR"):
        super().__init__()
        self.kind = _choice(kind, DFM_NAMES, "DFM", model)
        self.simple_head = simple_head if simple_head is not None else nn.Linear(simple_dim, 1)
        self.complex_head = complex_head if complex_head is not None else nn.Linear(complex_dim, 1)
        if self.kind == "wsf":
            self.weights = nn.Parameter(torch.full((2,), 0.5))
        elif self.kind == "vf":
            from benchmark.errors import CTRBenchError
            if not float(vf_tau) > 0:
                raise CTRBenchError(f"{model}: vf_tau={vf_tau} must be > 0 (Gumbel-softmax temperature)")
            self.vote_simple, self.vote_complex = nn.Linear(simple_dim, 1), nn.Linear(complex_dim, 1)
            self.tau, self.eval_noise = float(vf_tau), bool(vf_eval_noise)
        elif self.kind == "cf":
            self.fc = nn.Linear(simple_dim + complex_dim, 1)
        elif self.kind == "moef":
            self.gate = nn.Linear(simple_dim + complex_dim, 2)
            self.experts = nn.Linear(simple_dim + complex_dim, 2)

    def init_weights(self):  # BaseModel.reset_parameters: keep WSF's 0.5 init
        if self.kind == "wsf":
            with torch.no_grad():
                self.weights.fill_(0.5)

    def forward(self, h_s, h_c):
        z_s, z_c = self.simple_head(h_s), self.complex_head(h_c)
        if self.kind == "sum":
            z = z_s + z_c
        elif self.kind == "wsf":
            z = self.weights[0] * z_s + self.weights[1] * z_c
        elif self.kind == "vf":
            pi = torch.cat([self.vote_simple(h_s), self.vote_complex(h_c)], dim=-1)
            if self.training or self.eval_noise:
                p = F.gumbel_softmax(pi, tau=self.tau, hard=False, dim=-1)
            else:
                p = torch.softmax(pi / self.tau, dim=-1)
            z = p[:, :1] * z_s + p[:, 1:] * z_c
        elif self.kind == "cf":
            z = self.fc(torch.cat([h_s, h_c], dim=-1))
        else:
            u = torch.cat([h_s, h_c], dim=-1)
            z = (torch.softmax(self.gate(u), dim=-1) * self.experts(u)).sum(dim=-1, keepdim=True)
        return z, z_s, z_c


# ---- TF4CTR ---------------------------------------------------------------------------------------
@register_model
class TF4CTR(TwinFocusLossMixin, CTRModel):
    """TF4CTR (Li et al., arXiv 2405.03167): SSEM + MLP_s/MLP_c + DFM + Twin Focus loss (authors' TF4CTRv2).

    SSM in {share, SER, GM, MoE} (``none`` = share); DFM in {sum, WSF, VF, CF, MoEF} (``none`` = sum).
    MLP_s (``easy_hidden_units``) encodes h_es, MLP_c (``hard_hidden_units``) encodes h_hs; both are
    BN+activation+dropout blocks without output layer, the DFM owns the logit heads z_s, z_c.
    Loss = main loss(sigma(z)) + alpha L_simple(sigma(z_s)) + (1 - alpha) L_complex(sigma(z_c)) + L2
    (``tf_loss: False`` drops the TF term). Where paper and code differ the code is the default:
    SER's easy table has dim d // 2 (``easy_embedding_dim``), VF feeds pi directly as Gumbel logits with
    tau = ``vf_tau`` = 0.8. One exception: VF draws no Gumbel noise at evaluation unless
    ``vf_eval_noise: True`` (the code draws it, so its inference is stochastic). The authors' "TF4CTR" v1
    (DualMLP + TF loss, Table II) is ``SSM: share, DFM: WSF``.
    """

    def __init__(self, feature_map, model_id="TF4CTR", embedding_dim=16, SSM="SER", DFM="WSF",
                 easy_embedding_dim=None, easy_hidden_units=(400,), hard_hidden_units=(400, 400, 400),
                 hidden_activations="relu", net_dropout=0.0, batch_norm=True, alpha=0.25, c=0.8, gamma=1,
                 tf_loss=True, tf_allow_any_c=False, vf_tau=0.8, vf_eval_noise=False, **kwargs):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        from benchmark.errors import CTRBenchError

        easy_hidden_units, hard_hidden_units = list(easy_hidden_units or []), list(hard_hidden_units or [])
        if not easy_hidden_units or not hard_hidden_units:
            raise CTRBenchError(f"{model_id}: easy_hidden_units and hard_hidden_units need at least one layer "
                                f"(got {easy_hidden_units} and {hard_hidden_units})")
        block = dict(hidden_activations=hidden_activations, dropout_rates=net_dropout, batch_norm=batch_norm,
                     activation_options=kwargs)
        self.ssem = make_ssem(SSM, feature_map, embedding_dim, model=model_id,
                              easy_embedding_dim=easy_embedding_dim, hidden_activations=hidden_activations,
                              net_dropout=net_dropout, batch_norm=batch_norm)
        self.mlp_s = MLP(self.ssem.easy_dim, hidden_units=easy_hidden_units, **block)
        self.mlp_c = MLP(self.ssem.hard_dim, hidden_units=hard_hidden_units, **block)
        self.dfm = DynamicFusion(DFM, easy_hidden_units[-1], hard_hidden_units[-1], vf_tau=vf_tau,
                                 vf_eval_noise=vf_eval_noise, model=model_id)
        self.twin_focus = TwinFocusLoss(alpha, c, gamma, tf_allow_any_c, source=model_id) if tf_loss else None
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        h_es, h_hs = self.ssem(X)
        z, z_s, z_c = self.dfm(self.mlp_s(h_es), self.mlp_c(h_hs))
        return self.output(z, logit_simple=z_s, logit_complex=z_c)
