"""Contrastive auxiliary losses shared by the zoo.

``ibcl_loss`` is IBNet's information-bottleneck contrastive loss (paper eq. 10 as the authors' code
computes it, paper Sec. IV-B): per sample, the cross embeddings of all layers are concatenated
(``C`` and the augmented ``C~``, each B x L*D), rows are L2-normalised, and with the in-batch cosine
similarities ``S_ij = cos(C_i, C~_j)``

    loss = mean_i  -log( exp(1/tau) / sum_j exp(S_ij / tau) + 1e-5 )

The numerator is the constant exp(1/tau) (the positive pair is not computed), the denominator runs
over the whole batch including j = i, so minimising it pushes every original/augmented pair apart.
The ratio is evaluated as ``exp(1/tau - logsumexp_j(S_ij/tau))``, which is the same number without
overflow at small temperatures. Memory is B x B: keep CPU batches small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

IBCL_EPS = 1e-5  # the authors' "10e-6" inside the log


def _stack(embs) -> torch.Tensor:
    """(B, L*D) in float32: the loss is computed in full precision even when the embeddings come from a
    forward under autocast (bf16/fp16 layers, e.g. the augmentation, beside fp32 ones)."""
    if isinstance(embs, torch.Tensor):
        return embs.flatten(1).float()
    return torch.cat([e.flatten(1).float() for e in embs], dim=-1)


def ibcl_loss(
    cross_embs: Sequence[torch.Tensor] | torch.Tensor,
    aug_embs: Sequence[torch.Tensor] | torch.Tensor,
    temperature: float = 0.5,
    eps: float = IBCL_EPS,
) -> torch.Tensor:
    """IBNet's IBCL loss between original and augmented cross embeddings (lists of B x D, or B x K)."""
    c = F.normalize(_stack(cross_embs), dim=1)
    c_aug = F.normalize(_stack(aug_embs), dim=1)
    sim = c @ c_aug.t() / temperature  # B x B
    ratio = torch.exp(1.0 / temperature - torch.logsumexp(sim, dim=1))
    return -torch.log(ratio + eps).mean()


def ibcl_bounds(batch_size: int, temperature: float, eps: float = IBCL_EPS) -> tuple[float, float]:
    """The range of ``ibcl_loss`` for a batch of B (cosines in [-1, 1])."""
    low = -math.log(math.exp(2.0 / temperature) / batch_size + eps)
    high = -math.log(1.0 / batch_size + eps)
    return low, high


__all__ = ["ibcl_loss", "ibcl_bounds", "IBCL_EPS"]
