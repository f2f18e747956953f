"""Mask augmentation of cross embeddings (IBNet §IV-A and its Table VI alternatives).

Each cross-layer output ``c`` (B, D) gets a mask ``rho`` in [0, 1]; the masked vector
``c_mask = rho * c + (1 - rho) * fill`` (``fill`` = the scalar mean of the whole batch tensor, as the
authors' code and the paper's §IV-E "Mask_IBNet" read, or 0 for eq. 5's plain product) is concatenated
with ``c`` and compressed back to D by one linear layer: ``c_aug = H([c ; c_mask])``.

Mask kinds (``mask_type``):

- ``learned`` (IBNet): ``rho = sigmoid((M(c) + log(eps) - log(1 - eps)) / gate_temp)``, a binary-concrete
  (relaxed Bernoulli) sample with ``eps ~ U(0, 1)``. As in the authors' code, ONE eps vector of length D is
  drawn per call and broadcast over the batch (``noise_shape: dim``; ``element`` draws one per entry), and
  the noise stays on at evaluation (``noise_at_eval: True``; False uses eps = 0.5, i.e. no noise).
- ``gate`` (Table VI "Self Gate"): ``rho = sigmoid(M(c))``, deterministic.
- ``dropout`` (Table VI "Random Mask(p)"): inverted dropout of rate ``random_dropout`` on ``c`` during
  training only (``c_mask = dropout(c)``), no learned mask.

``M`` (D -> D with bias) and ``H`` (2D -> D with bias) are shared by all cross layers (the authors' code);
``shared: False`` gives one pair per layer (the paper's per-layer reading; it changes #params).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelConfigError
from ..options import check_choice

MASK_TYPES = ("learned", "gate", "dropout")
MASK_FILLS = ("batch_mean", "zero")
NOISE_SHAPES = ("dim", "element")
_EPS = 1e-10


def _check(name: str, value, choices) -> str:
    return check_choice(name, str(value).lower(), choices)


def logistic_noise(shape, device=None, dtype=None) -> torch.Tensor:
    """``log(eps) - log(1 - eps)`` with ``eps ~ U(0, 1)`` (clamped away from 0 and 1), from torch's RNG."""
    eps = torch.rand(shape, device=device, dtype=dtype).clamp_(_EPS, 1.0 - _EPS)
    return torch.log(eps) - torch.log1p(-eps)


def fill_mask(c: torch.Tensor, rho: torch.Tensor, fill: str = "batch_mean") -> torch.Tensor:
    """``rho * c + (1 - rho) * mu``; mu = the (differentiable) mean of all entries of ``c``, or 0."""
    if fill == "zero":
        return rho * c
    return rho * c + (1.0 - rho) * c.mean()


class RelaxedBernoulliMask(nn.Module):
    """``rho = sigmoid((M(c) + noise) / temperature)``; ``noise=False`` gives the deterministic self-gate."""

    def __init__(
        self,
        dim: int,
        temperature: float = 0.1,
        noise: bool = True,
        noise_at_eval: bool = True,
        noise_shape: str = "dim",
    ):
        super().__init__()
        if float(temperature) <= 0:
            raise ModelConfigError(f"gate_temp={temperature} must be > 0")
        self.logits = nn.Linear(dim, dim)
        self.temperature = float(temperature)
        self.noise = bool(noise)
        self.noise_at_eval = bool(noise_at_eval)
        self.noise_shape = _check("mask_noise_shape", noise_shape, NOISE_SHAPES)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        g = self.logits(c)
        if not self.noise:
            return torch.sigmoid(g)
        if self.training or self.noise_at_eval:
            shape = g.shape[-1:] if self.noise_shape == "dim" else g.shape
            g = g + logistic_noise(shape, device=g.device, dtype=g.dtype)
        return torch.sigmoid(g / self.temperature)


class MaskAugmentation(nn.Module):
    """Augments each cross embedding: ``c_aug_l = H([c_l ; fill_mask(c_l, rho_l)])`` (IBNet eqs. 5-8)."""

    def __init__(
        self,
        dim: int,
        num_layers: int = 3,
        mask_type: str = "learned",
        gate_temp: float = 0.1,
        mask_fill: str = "batch_mean",
        noise_at_eval: bool = True,
        noise_shape: str = "dim",
        random_dropout: float = 0.5,
        shared: bool = True,
    ):
        super().__init__()
        self.mask_type = _check("mask_type", mask_type, MASK_TYPES)
        self.mask_fill = _check("mask_fill", mask_fill, MASK_FILLS)
        self.num_layers = int(num_layers)
        self.shared = bool(shared)
        n = 1 if self.shared else self.num_layers
        if self.mask_type == "dropout":
            if not 0.0 <= float(random_dropout) < 1.0:
                raise ModelConfigError(f"random_dropout={random_dropout} must be in [0, 1)")
            self.dropout = nn.Dropout(float(random_dropout))
            self.masks = None
        else:
            self.masks = nn.ModuleList(
                RelaxedBernoulliMask(
                    dim,
                    gate_temp,
                    noise=self.mask_type == "learned",
                    noise_at_eval=noise_at_eval,
                    noise_shape=noise_shape,
                )
                for _ in range(n)
            )
        self.compress = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(n))

    def mask(self, c: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """The masked cross embedding ``c_mask`` of one layer."""
        if self.masks is None:
            return self.dropout(c)
        rho = self.masks[0 if self.shared else layer](c)
        return fill_mask(c, rho, self.mask_fill)

    def forward(self, cross_embs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for layer, c in enumerate(cross_embs):
            h = self.compress[0 if self.shared else layer]
            out.append(h(torch.cat([c, self.mask(c, layer)], dim=-1)))
        return out


__all__ = [
    "MaskAugmentation",
    "RelaxedBernoulliMask",
    "fill_mask",
    "logistic_noise",
    "MASK_TYPES",
    "MASK_FILLS",
]
