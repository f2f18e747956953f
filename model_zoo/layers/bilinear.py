"""Multi-head bilinear fusion of two stream outputs (FinalMLP, Mao et al. AAAI 2023, Eq. 5-6).

Per head h (the two vectors split into ``num_heads`` equal chunks):
``BF(a_h, b_h) = b + w1_h^T a_h + w2_h^T b_h + a_h^T W3_h b_h``; the logit is the sum over heads.
Summed over heads, the linear terms are one ``Linear(dim_a -> 1)`` and one ``Linear(dim_b -> 1)`` and
the per-head biases one bias, so the parameters are ``dim_a + dim_b + 1 + num_heads * (dim_a/k) * (dim_b/k)``.
With ``num_heads = 1`` this is the full bilinear fusion; the linear terms alone are DualMLP's sum.
"""

from __future__ import annotations

import torch
from torch import nn


class MultiHeadBilinearFusion(nn.Module):
    def __init__(self, dim_a: int, dim_b: int, num_heads: int = 1):
        super().__init__()
        if num_heads < 1 or dim_a % num_heads or dim_b % num_heads:
            from benchmark.errors import CTRBenchError
            raise CTRBenchError(f"num_heads={num_heads} must divide both stream output widths "
                                f"({dim_a} and {dim_b}); change num_heads or the last hidden units")
        self.num_heads = int(num_heads)
        self.head_a, self.head_b = dim_a // num_heads, dim_b // num_heads
        self.linear_a = nn.Linear(dim_a, 1, bias=True)
        self.linear_b = nn.Linear(dim_b, 1, bias=False)
        self.bilinear = nn.Parameter(torch.empty(self.num_heads, self.head_a, self.head_b))
        self.init_weights()

    def init_weights(self):
        std = (2.0 / (self.head_a + self.head_b)) ** 0.5   # xavier-normal per head matrix
        nn.init.normal_(self.bilinear, std=std)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        batch = a.shape[0]
        a_h = a.view(batch, self.num_heads, self.head_a)
        b_h = b.view(batch, self.num_heads, self.head_b)
        bilinear = torch.einsum("bhi,hij,bhj->b", a_h, self.bilinear, b_h).unsqueeze(-1)
        return self.linear_a(a) + self.linear_b(b) + bilinear


def bilinear_fusion_param_count(dim_a: int, dim_b: int, num_heads: int) -> int:
    return dim_a + 1 + dim_b + num_heads * (dim_a // num_heads) * (dim_b // num_heads)
