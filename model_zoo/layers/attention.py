"""Multi-head self-attention over field embeddings, written once for every model that needs it.

``MultiHeadSelfAttention`` is AutoInt's interacting layer (Song et al., CIKM 2019, eqs. 5-8): each
field embedding e_m attends to all fields through ``num_heads`` heads of width
``attention_dim / num_heads``; the heads are concatenated, a residual is added and a ReLU applied:

    e~_m = concat_h( sum_k softmax_k(<W_Q^h e_m, W_K^h e_k> / s) W_V^h e_k )
    e^res_m = ReLU( LN?( e~_m + W_res e_m ) )

The wheel has ``ScaledDotProductAttention`` (used here for each head) but no multi-head layer.

Conventions follow FuxiCTR/BARS where the paper is silent, because the published baseline numbers
were produced with them: Q/K/V/residual projections have no bias; the residual is a projection only
when the input and output widths differ (``residual_projection: auto``) and the identity otherwise
(``always`` keeps the paper's W_res on every layer); ``use_scale`` divides scores by sqrt(head_dim)
(AutoInt itself does not scale); optional LayerNorm before the ReLU; dropout on the attention weights.

``forward(X, context=None)``: queries come from ``X`` and keys/values from ``context`` (default
``X``), so a caller can let fields attend to another set of embeddings with the same layer.
"""

from __future__ import annotations

import torch
from fuxictr.pytorch.layers import ScaledDotProductAttention
from torch import nn

from ..errors import ModelConfigError
from ..options import check_choice


class MultiHeadSelfAttention(nn.Module):
    """AutoInt interacting layer: multi-head attention across fields + residual + ReLU.

    Input (B, F, input_dim) -> output (B, F, attention_dim).
    """

    def __init__(
        self,
        input_dim: int,
        attention_dim: int | None = None,
        num_heads: int = 1,
        dropout_rate: float = 0.0,
        use_residual: bool = True,
        use_scale: bool = False,
        layer_norm: bool = False,
        residual_projection: str = "auto",
        use_relu: bool = True,
    ):
        super().__init__()
        attention_dim = int(attention_dim or input_dim)
        num_heads = int(num_heads)
        if num_heads < 1 or attention_dim % num_heads:
            raise ModelConfigError(
                f"attention_dim={attention_dim} must be a positive multiple of "
                f"num_heads={num_heads}; change attention_dim or num_heads"
            )
        check_choice("residual_projection", residual_projection, ("auto", "always"))
        self.input_dim, self.attention_dim, self.num_heads = int(input_dim), attention_dim, num_heads
        self.head_dim = attention_dim // num_heads
        self.scale = self.head_dim**0.5 if use_scale else None
        self.W_q = nn.Linear(input_dim, attention_dim, bias=False)
        self.W_k = nn.Linear(input_dim, attention_dim, bias=False)
        self.W_v = nn.Linear(input_dim, attention_dim, bias=False)
        self.use_residual = bool(use_residual)
        needs_projection = residual_projection == "always" or input_dim != attention_dim
        self.W_res = (
            nn.Linear(input_dim, attention_dim, bias=False)
            if (self.use_residual and needs_projection)
            else None
        )
        self.attention = ScaledDotProductAttention(dropout_rate)
        self.layer_norm = nn.LayerNorm(attention_dim) if layer_norm else None
        self.use_relu = bool(use_relu)

    def _split(self, x):
        batch, fields, _ = x.shape
        return x.view(batch, fields, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, X, context=None):
        context = X if context is None else context
        query = self._split(self.W_q(X))
        key = self._split(self.W_k(context))
        value = self._split(self.W_v(context))
        out, _ = self.attention(query, key, value, scale=self.scale)
        out = out.transpose(1, 2).reshape(X.shape[0], X.shape[1], self.attention_dim)
        if self.use_residual:
            out = out + (self.W_res(X) if self.W_res is not None else X)
        if self.layer_norm is not None:
            out = self.layer_norm(out)
        return torch.relu(out) if self.use_relu else out
