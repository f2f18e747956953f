"""Token-matrix building blocks for layer-wise fusion of several interaction blocks.

All tensors are token matrices ``(B, n, d)``: n tokens (fields or learned slots) of width d.

- ``TokenMix``: a learned token-axis map ``Y[b] = P^T X[b]`` with ``P`` of shape (n_in, n_out); it mixes
  tokens and leaves the d axis alone (optionally a bias over d and a ReLU).
- ``GatedResidual``: ``max(eps, X W^T) * X`` with ``W`` a d x d matrix (no bias); the gate is bounded
  below by eps and unbounded above (DLF Eq. 9).
- ``BlockAttentionFusion``: block-wise Q/K/V, cross-attention from each block to every other block,
  self-attention inside each block, fused per block and then across blocks into one token matrix
  (DLF's NAF, Eqs. 10-14). Attention itself is fuxictr's ``ScaledDotProductAttention``.
"""

from __future__ import annotations

import math

import torch
from fuxictr.pytorch.layers import ScaledDotProductAttention
from torch import nn


class TokenMix(nn.Module):
    """``(B, n_in, d) -> (B, n_out, d)`` by a learned n_in x n_out matrix (kaiming-uniform init).

    ``bias_dim`` adds a bias of that width broadcast over the output tokens; ``activation="relu"``
    applies a ReLU after it.
    """

    def __init__(self, n_in: int, n_out: int, bias_dim: int | None = None, activation: str | None = None):
        super().__init__()
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.weight = nn.Parameter(torch.empty(self.n_in, self.n_out))
        self.bias = nn.Parameter(torch.zeros(int(bias_dim))) if bias_dim else None
        self.activation = nn.ReLU() if activation == "relu" else None
        self.init_weights()

    def init_weights(self):  # also called by BaseModel.reset_parameters
        # the authors' init of their (n_in, n_out) token matrices: torch's kaiming_uniform_ with its
        # defaults (a = 0, fan_in = the tensor's size(1) = n_out), i.e. U(+-sqrt(6 / n_out))
        nn.init.kaiming_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x):
        y = torch.einsum("bnd,nm->bmd", x, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y

    def extra_repr(self):
        return f"n_in={self.n_in}, n_out={self.n_out}, bias={self.bias is not None}"


class GatedResidual(nn.Module):
    """The residual ``max(eps, X W^T) * X`` of each token (W: d x d, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.gate = nn.Linear(dim, dim, bias=False)
        self.eps = float(eps)

    def gate_values(self, x):
        return torch.clamp_min(self.gate(x), self.eps)

    def forward(self, x):
        return self.gate_values(x) * x


class _MultiHead(nn.Module):
    """Multi-head dot-product attention of given Q, K, V (no projections): heads concatenated back to d."""

    def __init__(self, dim: int, num_heads: int, use_scale: bool = True, dropout: float = 0.0):
        super().__init__()
        self.num_heads = int(num_heads)
        self.head_dim = dim // self.num_heads
        self.scale = math.sqrt(self.head_dim) if use_scale else None
        self.attention = ScaledDotProductAttention(dropout)

    def _split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, q, k, v):
        out, _ = self.attention(self._split(q), self._split(k), self._split(v), scale=self.scale)
        b, h, n, dh = out.shape
        return out.transpose(1, 2).reshape(b, n, h * dh)


class BlockAttentionFusion(nn.Module):
    """Fuse ``num_blocks`` token matrices of equal shape ``(B, k, d)`` into one ``(B, k, d)`` by attention.

    One step, for each block M with the other blocks X1..Xm:
        Q_M, K_M, V_M = Z_M Wq_M, Z_M Wk_M, Z_M Wv_M                 (block-wise, d -> d, no bias)
        C_M = ReLU([attn(Q_M, K_X1, V_X1) || ... ] Wc_M + bc_M)       (cross-attention, m*d -> d)
        S_M = attn(Q_M, K_M, V_M)                                     (self-attention)
        H_M = C_M + S_M
    and ``Att = ReLU([H_1 || ... || H_B] W_F + b_F)`` (feature-axis concat, B*d -> d). With
    ``num_layers > 1`` the step repeats with fresh weights on ``Z_M <- LN(Z_M + H_M)`` and Att is computed
    from the last H. Multi-head attention splits d into ``num_heads`` heads, scaled by 1/sqrt(d_head).
    """

    def __init__(
        self,
        num_blocks: int,
        dim: int,
        num_heads: int = 2,
        num_layers: int = 1,
        use_scale: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_blocks < 2:
            raise ValueError("BlockAttentionFusion needs at least two blocks")
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} attention heads")
        self.num_blocks, self.dim, self.num_layers = int(num_blocks), int(dim), int(num_layers)
        self.attend = _MultiHead(dim, num_heads, use_scale, dropout)
        self.qkv = nn.ModuleList(
            nn.ModuleList(nn.Linear(dim, 3 * dim, bias=False) for _ in range(num_blocks))
            for _ in range(num_layers)
        )
        self.cross = nn.ModuleList(
            nn.ModuleList(nn.Linear((num_blocks - 1) * dim, dim) for _ in range(num_blocks))
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(
            nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_blocks)) for _ in range(num_layers - 1)
        )
        self.fuse = nn.Linear(num_blocks * dim, dim)
        self.relu = nn.ReLU()

    def _step(self, layer: int, blocks):
        qkv = [proj(z).chunk(3, dim=-1) for proj, z in zip(self.qkv[layer], blocks)]
        refined = []
        for m, (q, k, v) in enumerate(qkv):
            cross = [self.attend(q, qkv[x][1], qkv[x][2]) for x in range(self.num_blocks) if x != m]
            c = self.relu(self.cross[layer][m](torch.cat(cross, dim=-1)))
            refined.append(c + self.attend(q, k, v))
        return refined

    def block_outputs(self, blocks):
        """The per-block fused representations H_M of the last step."""
        if len(blocks) != self.num_blocks:
            raise ValueError(f"expected {self.num_blocks} blocks, got {len(blocks)}")
        shapes = {tuple(z.shape) for z in blocks}
        if len(shapes) != 1:
            raise ValueError(f"attention fusion needs blocks of equal shape, got {sorted(shapes)}")
        h = self._step(0, blocks)
        for layer in range(1, self.num_layers):
            blocks = [norm(z + hm) for norm, z, hm in zip(self.norms[layer - 1], blocks, h)]
            h = self._step(layer, blocks)
        return h

    def forward(self, blocks):
        return self.relu(self.fuse(torch.cat(self.block_outputs(blocks), dim=-1)))
