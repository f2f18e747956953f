"""MaskFusion building blocks (Liao et al., ICLR 2023): fused features for every layer of a DNN.

Let E (B x n x d) be an instance's field embeddings. MaskFusion concatenates a masked copy of the
instance-normalised embeddings onto the input of every linear layer t = 1..l of a model's DNN:

    z_t = concat(F_t, a_{t-1}),   a_t = act(W_t z_t + b_t),   F_t = vec(m_t * IN(E))

IN normalises each field embedding of each instance over its d entries (no affine parameters), and is
applied before the mask (IN is scale invariant per field, so it would cancel a feature-wise mask applied
first). The masks m_t decide in which layers, and how much, each feature is fused:

- ``none`` (the ablation's "Fusion layer"): F_t = vec(IN(E)) at every position;
- ``static`` ("Fu+FwM"): m = softmax over positions of a learned beta (l x n, or l x n x d), zero
  initialised, shared by all instances;
- ``adaptive`` (Adaptive FwMF / DwMF): one mask generator per position, an MLP [512, 256] -> n
  (feature-wise) or n*d (dimension-wise) logits on the raw vec(E); softmax across the l positions,
  separately for every feature (or feature dimension);
- ``dcnv2`` (DCNv2-type DwMF, Table 12): X_t = X_0 * (W_t X_{t-1} + b_t) + X_{t-1} with X_0 = vec(IN(E))
  (``stacked``; ``parallel`` uses X_0 in place of X_{t-1}) and F_t = X_t; the cross layers are
  fuxictr's ``CrossNetV2`` layers, no softmax.

SmoothL0 (Table 11) puts a shared gate g(x) = x^2 / (x^2 + eps) (n x d, learned x) on IN(E) before the
mask; x has its own SGD optimiser, eps decays geometrically to a floor, a penalty lambda * mean(g) pushes
dimensions to exactly zero, and dimensions whose gate is below ``prune_threshold`` are pruned (hard zero
at evaluation).

``FusedLinear`` is the DNN layer reading [F_t ; a_{t-1}]; it asks a ``MaskFusionLayer`` for F_t of the
current batch, which computes all positions' masks once per forward from the embeddings handed to it
(``reset`` / ``add_embedding``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fuxictr.pytorch.layers import CrossNetV2
from torch import nn

from ..layers.mlp import MLP

FUSION_MASKS = ("none", "static", "adaptive", "dcnv2")  # maskfusion.mask_type
GRANULARITIES = ("feature", "dimension")
DCN_MODES = ("stacked", "parallel")
DCN_INPUTS = ("in", "raw")


def instance_norm(emb: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """IN of each field embedding over its last axis (mean 0, biased variance 1), no affine."""
    return F.layer_norm(emb, emb.shape[-1:], eps=eps)


class FusedLinear(nn.Linear):
    """A DNN linear layer whose input is [F_t ; x]: W_t is (out, n*d + in), one bias.

    ``provider.fused(position)`` gives F_t (B x n*d) of the current batch; the provider is referenced,
    not owned (it is a submodule of the model once), so its parameters are counted once.
    """

    def __init__(self, base: nn.Linear, fuse_dim: int, position: int, provider: "MaskFusionLayer"):
        super().__init__(int(fuse_dim) + base.in_features, base.out_features, bias=base.bias is not None)
        self.host_in_features = base.in_features
        self.fuse_dim = int(fuse_dim)
        self.position = int(position)
        self.__dict__["_provider"] = provider  # plain attribute: not registered as a child module

    def forward(self, x):
        fused = self._provider.fused(self.position)
        return F.linear(torch.cat([fused, x], dim=-1), self.weight, self.bias)

    def init_weights(self):  # BaseModel.reset_parameters initialises exact nn.Linear types only
        nn.init.xavier_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self):
        return (
            f"fused={self.fuse_dim}, host_in={self.host_in_features}, out={self.out_features}, "
            f"position={self.position}"
        )


class AdaptiveMaskGenerator(nn.Module):
    """One MLP per fusion position on vec(E); logits (B, l, K) softmaxed across the l positions."""

    def __init__(
        self,
        input_dim: int,
        positions: int,
        out_dim: int,
        hidden_units=(512, 256),
        activation="relu",
        zero_init_last: bool = False,
        activation_options=None,
    ):
        super().__init__()
        self.generators = nn.ModuleList(
            [
                MLP(
                    input_dim,
                    hidden_units=list(hidden_units),
                    hidden_activations=activation,
                    output_dim=out_dim,
                    activation_options=activation_options,
                )
                for _ in range(positions)
            ]
        )
        self.zero_init_last = bool(zero_init_last)

    def init_weights(self):  # runs after the default xavier init: optional uniform 1/l start
        if self.zero_init_last:
            for gen in self.generators:
                last = [m for m in gen.modules() if isinstance(m, nn.Linear)][-1]
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def forward(self, flat_emb: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([gen(flat_emb) for gen in self.generators], dim=1)
        return torch.softmax(logits, dim=1)


class StaticMask(nn.Module):
    """Instance-independent masks: softmax over positions of beta (l x n [x d]), beta = 0 at init."""

    def __init__(self, positions: int, num_fields: int, embedding_dim: int, granularity: str):
        super().__init__()
        shape = (
            (positions, num_fields) if granularity == "feature" else (positions, num_fields, embedding_dim)
        )
        self.beta = nn.Parameter(torch.zeros(shape))

    def init_weights(self):
        nn.init.zeros_(self.beta)

    def forward(self, batch_size: int) -> torch.Tensor:
        mask = torch.softmax(self.beta, dim=0)
        return mask.unsqueeze(0).expand(batch_size, *mask.shape)


class CrossFusionController(nn.Module):
    """DCNv2-type controller: the t-th cross output X_t is the feature fused at position t."""

    def __init__(self, input_dim: int, positions: int, mode: str = "stacked"):
        super().__init__()
        self.crossnet = CrossNetV2(input_dim, positions)
        self.mode = mode

    def forward(self, x0: torch.Tensor) -> list[torch.Tensor]:
        outputs, x_t = [], x0
        for layer in self.crossnet.cross_layers:
            prev = x_t if self.mode == "stacked" else x0
            x_t = prev + x0 * layer(prev)
            outputs.append(x_t)
        return outputs


class SmoothL0Gate(nn.Module):
    """g(x) = x^2 / (x^2 + eps) per fused dimension (n x d), shared by all fusion positions.

    ``eps`` is a buffer (saved with checkpoints) that ``step()`` multiplies by ``eps_decay`` down to
    ``eps_min``. At evaluation, gates below ``prune_threshold`` are exactly zero (pruned).
    """

    def __init__(
        self,
        num_fields: int,
        embedding_dim: int,
        x_init: float | None = None,
        eps_init: float = 0.1,
        eps_decay: float = 0.999,
        eps_min: float = 5e-4,
        prune_threshold: float = 1e-6,
    ):
        super().__init__()
        self.eps_init = float(eps_init)
        # None: x = sqrt(eps_init), so g starts at 1/2, where dg/dx is near its largest and the data's
        # gradient can hold a gate against the penalty; from x = 1 (g saturated) the penalty that moves
        # the gates in one run swamps the data's and every gate falls at once (docs/decisions.md)
        self.x_init = math.sqrt(self.eps_init) if x_init is None else float(x_init)
        self.eps_decay, self.eps_min = float(eps_decay), float(eps_min)
        self.prune_threshold = float(prune_threshold)
        self.x = nn.Parameter(torch.full((num_fields, embedding_dim), self.x_init))
        self.register_buffer("eps", torch.tensor(self.eps_init))

    def init_weights(self):
        with torch.no_grad():
            self.x.fill_(self.x_init)
            self.eps.fill_(self.eps_init)

    def soft_gate(self) -> torch.Tensor:
        sq = self.x * self.x
        return sq / (sq + self.eps)

    def forward(self) -> torch.Tensor:
        gate = self.soft_gate()
        if not self.training:
            gate = torch.where(gate < self.prune_threshold, torch.zeros_like(gate), gate)
        return gate

    def penalty(self) -> torch.Tensor:
        """The smoothed-L0 count of active dimensions, as a fraction: mean(g)."""
        return self.soft_gate().mean()

    @torch.no_grad()
    def step(self) -> None:
        self.eps.copy_(torch.clamp(self.eps * self.eps_decay, min=self.eps_min))

    @torch.no_grad()
    def sparsity(self) -> float:
        """Pruned fused dimensions / (n*d); equals the reduce ratio of the fused-feature weights."""
        return float((self.soft_gate() < self.prune_threshold).float().mean())


class MaskFusionLayer(nn.Module):
    """Computes F_1..F_l for one batch from the field embeddings (see the module docstring).

    Per forward: ``reset()``, then ``add_embedding(t)`` for each tensor of field embeddings (B x k x d,
    or flattened B x k*d) in field order; the first ``fused(t)`` computes every position's feature.
    ``masks`` holds the last batch's masks (B x l x n, or B x l x n x d; None without masks).
    """

    def __init__(
        self,
        num_fields: int,
        embedding_dim: int,
        positions: int,
        mask_type: str = "adaptive",
        granularity: str = "dimension",
        generator_hidden_units=(512, 256),
        generator_activation="relu",
        instance_norm: bool = True,
        in_eps: float = 1e-5,
        zero_init_generators: bool = False,
        smooth_l0: dict | None = None,
        dcn_mode: str = "stacked",
        dcn_input: str = "in",
        activation_options=None,
    ):
        super().__init__()
        self.num_fields, self.embedding_dim, self.positions = (
            int(num_fields),
            int(embedding_dim),
            int(positions),
        )
        self.mask_type, self.granularity = mask_type, granularity
        self.use_instance_norm, self.in_eps = bool(instance_norm), float(in_eps)
        self.dcn_input = dcn_input
        fuse_dim = self.num_fields * self.embedding_dim
        self.fuse_dim = fuse_dim
        self.generator = self.static_mask = self.controller = None
        if mask_type == "adaptive":
            out_dim = self.num_fields if granularity == "feature" else fuse_dim
            self.generator = AdaptiveMaskGenerator(
                fuse_dim,
                self.positions,
                out_dim,
                generator_hidden_units,
                generator_activation,
                zero_init_generators,
                activation_options,
            )
        elif mask_type == "static":
            self.static_mask = StaticMask(self.positions, self.num_fields, self.embedding_dim, granularity)
        elif mask_type == "dcnv2":
            self.controller = CrossFusionController(fuse_dim, self.positions, dcn_mode)
        self.gate = SmoothL0Gate(self.num_fields, self.embedding_dim, **smooth_l0) if smooth_l0 else None
        self._pieces: list[torch.Tensor] = []
        self._fused: list[torch.Tensor] | None = None
        self.masks: torch.Tensor | None = None

    # ---- per-batch state --------------------------------------------------------------------------
    def reset(self) -> None:
        self._pieces, self._fused, self.masks = [], None, None

    def add_embedding(self, emb: torch.Tensor) -> None:
        self._pieces.append(emb.reshape(emb.shape[0], -1, self.embedding_dim))
        self._fused = None

    def embeddings(self) -> torch.Tensor:
        if not self._pieces:
            raise RuntimeError("MaskFusionLayer: no field embeddings were captured in this forward pass")
        emb = torch.cat(self._pieces, dim=1) if len(self._pieces) > 1 else self._pieces[0]
        if emb.shape[1] != self.num_fields:
            raise RuntimeError(
                f"MaskFusionLayer: captured {emb.shape[1]} fields, expected {self.num_fields} "
                f"(was the embedding layer called more than once in one forward?)"
            )
        return emb

    def fused(self, position: int) -> torch.Tensor:
        if self._fused is None:
            self._fused = self.compute(self.embeddings())
        return self._fused[position]

    # ---- the fused features -----------------------------------------------------------------------
    def normalised(self, emb: torch.Tensor) -> torch.Tensor:
        out = instance_norm(emb, self.in_eps) if self.use_instance_norm else emb
        if self.gate is not None:
            out = out * self.gate()
        return out

    def compute(self, emb: torch.Tensor) -> list[torch.Tensor]:
        batch = emb.shape[0]
        normed = self.normalised(emb)
        if self.mask_type == "dcnv2":
            x0 = (normed if self.dcn_input == "in" else emb).flatten(start_dim=1)
            return self.controller(x0)
        if self.mask_type == "none":
            flat = normed.flatten(start_dim=1)
            return [flat] * self.positions
        if self.mask_type == "static":
            masks = self.static_mask(batch)
        else:
            masks = self.generator(emb.flatten(start_dim=1))
            if self.granularity == "dimension":
                masks = masks.reshape(batch, self.positions, self.num_fields, self.embedding_dim)
        self.masks = masks
        if masks.dim() == 3:  # feature-wise: one scalar per field, broadcast over d
            masks = masks.unsqueeze(-1)
        return [(masks[:, t] * normed).flatten(start_dim=1) for t in range(self.positions)]
