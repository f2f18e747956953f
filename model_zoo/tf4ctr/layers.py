"""TF4CTR's building blocks (Li et al., arXiv 2405.03167, Sec. III-C to III-F).

- ``make_ssem``: Sample Selection Embedding Module, ``SSM`` in {share (= none), SER, GM, MoE}; its
  tables are built by the owning model's ``field_embedding`` and read through its ``embed``
  (``ssem_outputs``), which give the flattened easy / hard embeddings (h_es, h_hs).
- ``DynamicFusion``: ``DFM`` in {sum (= none), WSF, VF, CF, MoEF}; owns the two logit heads and returns
  (z, z_s, z_c).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelConfigError
from ..layers import MLP
from ..options import check_choice

SSEM_NAMES = {
    "share": "share",
    "none": "share",
    "ser": "ser",
    "gm": "gm",
    "gate": "gm",
    "moe": "moe",
    "mmoe": "moe",
}
DFM_NAMES = {"sum": "sum", "none": "sum", "wsf": "wsf", "vf": "vf", "cf": "cf", "moef": "moef"}


def _choice(value, table: dict, key: str, model: str) -> str:
    name = str(value).lower() if value is not None else "none"
    return table[check_choice(key, name, tuple(sorted(table)), model)]


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

    tables = ("embedding_layer",)

    def __init__(
        self,
        field_embedding,
        feature_map,
        embedding_dim,
        hidden_activations="relu",
        net_dropout=0.0,
        batch_norm=True,
        **_,
    ):
        super().__init__()
        # the blocks of the gated SSEMs (GM, MoE): BN + activation + dropout
        self.block = dict(
            hidden_activations=hidden_activations, dropout_rates=net_dropout, batch_norm=batch_norm
        )
        self.embedding_layer = field_embedding(feature_map, embedding_dim)
        self.easy_dim = self.hard_dim = embedding_width(feature_map, embedding_dim)
        self.easy_field_dim = self.hard_field_dim = embedding_dim

    def forward(self, h):
        return h, h


class SERSSEM(nn.Module):
    """Separate Embedding Representations (Eq. 3): an easy and a hard table over the same vocabularies.

    The easy table has ``easy_embedding_dim`` (default ``embedding_dim // 2`` as in the authors' code and
    logs; the paper gives both tables the same dim: set ``easy_embedding_dim`` = ``embedding_dim``).
    """

    tables = ("easy_embedding_layer", "embedding_layer")

    def __init__(self, field_embedding, feature_map, embedding_dim, easy_embedding_dim=None, **_):
        super().__init__()
        easy = int(easy_embedding_dim or max(1, embedding_dim // 2))
        self.embedding_layer = field_embedding(feature_map, embedding_dim)
        self.easy_embedding_layer = field_embedding(feature_map, easy)
        self.hard_dim = embedding_width(feature_map, embedding_dim)
        self.easy_dim = embedding_width(feature_map, easy)
        self.easy_field_dim, self.hard_field_dim = easy, embedding_dim

    def forward(self, h_easy, h_hard):
        return h_easy, h_hard


class GateSSEM(ShareSSEM):
    """Gating Mechanism (Eq. 4): g = sigmoid(Linear(Block(D -> D/4)(h))); h_es = g*h, h_hs = (1-g)*h."""

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        D = self.hard_dim
        self.gate = MLP(D, hidden_units=[max(1, D // 4)], output_dim=1, **self.block)

    def forward(self, h):
        g = torch.sigmoid(self.gate(h))
        return g * h, (1 - g) * h


class MoESSEM(ShareSSEM):
    """Two experts Block(D -> D/2) -> Block(D/2 -> D) and two softmax gates Linear(Block(D -> D/4)) (Eq. 5)."""

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        D = self.hard_dim
        self.experts = nn.ModuleList(MLP(D, hidden_units=[max(1, D // 2), D], **self.block) for _ in range(2))
        self.gates = nn.ModuleList(
            MLP(D, hidden_units=[max(1, D // 4)], output_dim=2, **self.block) for _ in range(2)
        )

    def forward(self, h):
        experts = torch.stack([e(h) for e in self.experts], dim=1)  # (B, 2, D)
        outs = [torch.einsum("be,bed->bd", torch.softmax(g(h), dim=-1), experts) for g in self.gates]
        return outs[0], outs[1]


_SSEM = {"share": ShareSSEM, "ser": SERSSEM, "gm": GateSSEM, "moe": MoESSEM}


def make_ssem(name, field_embedding, feature_map, embedding_dim, model="TF4CTR", **options) -> nn.Module:
    """The SSEM ``name``, its tables built by ``field_embedding`` (the owning model's factory)."""
    return _SSEM[_choice(name, SSEM_NAMES, "SSM", model)](
        field_embedding, feature_map, embedding_dim, **options
    )


def ssem_outputs(model, X):
    """(h_es, h_hs) of ``model.ssem``, its tables read through the model's ``embed``."""
    tables = [model.embed(X, flatten=True, layer=f"ssem.{name}") for name in model.ssem.tables]
    return model.ssem(*tables)


# ---- DFM ------------------------------------------------------------------------------------------
class DynamicFusion(nn.Module):
    """Dynamic Fusion Module (Eqs. 8-11) over the encoders' outputs h_s (width H_s) and h_c (H_c).

    z_s = simple_head(h_s), z_c = complex_head(h_c) (Linear(., 1) with bias unless given) feed the TF
    loss; the fused logit z is
      sum:  z_s + z_c                      wsf:  w1 z_s + w2 z_c, (w1, w2) learnable, init 0.5
      vf:   p_s z_s + p_c z_c, (p_s, p_c) = softmax(([pi_s, pi_c] + G) / tau), pi = Linear(., 1)(h),
            G ~ Gumbel(0, 1) (the code uses pi as the Gumbel logits; the paper's log(pi) is undefined for
            pi < 0). Noise is drawn in training and, as in the authors' code, at evaluation too
            (``vf_eval_noise: True``, the default: inference is stochastic); ``vf_eval_noise: False`` is
            the deterministic evaluation softmax(pi / tau).
      cf:   Linear(H_s + H_c, 1)([h_s || h_c])
      moef: sum_k softmax(W_g u)_k (W_m u)_k, u = [h_s || h_c], W_g, W_m: Linear(H_s + H_c, 2)
    """

    def __init__(
        self,
        kind,
        simple_dim,
        complex_dim,
        vf_tau=0.8,
        vf_eval_noise=True,
        simple_head=None,
        complex_head=None,
        model="TF4CTR",
    ):
        super().__init__()
        self.kind = _choice(kind, DFM_NAMES, "DFM", model)
        self.simple_head = simple_head if simple_head is not None else nn.Linear(simple_dim, 1)
        self.complex_head = complex_head if complex_head is not None else nn.Linear(complex_dim, 1)
        if self.kind == "wsf":
            self.weights = nn.Parameter(torch.full((2,), 0.5))
        elif self.kind == "vf":
            if not float(vf_tau) > 0:
                raise ModelConfigError(f"{model}: vf_tau={vf_tau} must be > 0 (Gumbel-softmax temperature)")
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
