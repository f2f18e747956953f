"""PNN family (Qu et al., ICDM 2016; kernel product from Qu et al., TOIS 2018): product layer + DNN.

The product layer feeds ``[vec(E) ; p]`` to the DNN (its first linear layer is the paper's
l_z + l_p), where p is selected by ``product_type``:

- ``inner`` (IPNN): ``p_ij = <e_i, e_j>`` for the n(n-1)/2 field pairs i < j;
- ``outer`` (OPNN): the paper's superposition ``p = f_S f_S^T`` with ``f_S = sum_i e_i`` (d x d,
  flattened), the sum of all outer products e_i e_j^T;
- ``kernel`` (KPNN): ``p_ij = e_i^T K_ij e_j`` with ``kernel_type`` ``mat`` (a d x d matrix per pair),
  ``vec`` (a d-vector per pair, i.e. a diagonal K) or ``num`` (a scalar per pair).

``IPNN``, ``OPNN`` and ``KPNN`` are the same class with the product type fixed.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers.pairwise import PairIndex

PRODUCT_TYPES = ("inner", "outer", "kernel")
KERNEL_TYPES = ("mat", "vec", "num")


def product_dim(product_type: str, num_fields: int, embedding_dim: int) -> int:
    if product_type == "outer":
        return embedding_dim * embedding_dim
    return num_fields * (num_fields - 1) // 2


@register_model
class PNN(CTRModel):
    """PNN (Qu et al. ICDM 2016 / TOIS 2018): inner (IPNN), outer (OPNN) or kernel (KPNN) product layer + DNN (``product_type``).

    Attributes: ``embedding_layer`` (``field_embedding``), ``pairs`` (``PairIndex``), ``kernel``
    (KPNN only), ``dnn`` (``model_zoo.layers.MLP`` on ``[vec(E) ; p]``, ending in the output unit).
    ``forward`` = ``embed`` -> ``interact(feature_emb, feature_emb)`` -> ``dnn_input`` -> ``dnn``;
    ``interact(left, right)`` pairs ``left_i`` with ``right_j`` (i < j; outer: sum(left) x sum(right)).
    """

    fixed_product_type: str | None = None

    choices = {"product_type": PRODUCT_TYPES, "kernel_type": KERNEL_TYPES}

    def __init__(
        self,
        feature_map,
        model_id=None,
        embedding_dim=10,
        product_type=None,
        kernel_type="mat",
        hidden_units=(400, 400, 400),
        hidden_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        name = type(self).__name__
        if self.fixed_product_type is not None:
            if product_type not in (None, self.fixed_product_type):
                raise ModelConfigError(
                    f"model {name} fixes product_type={self.fixed_product_type}; drop "
                    f"product_type={product_type!r} or use model PNN"
                )
            product_type = self.fixed_product_type
        product_type = product_type or "inner"
        super().__init__(feature_map, model_id=model_id or name, **kwargs)
        self.choose("product_type", product_type)
        if product_type == "kernel":
            self.choose("kernel_type", kernel_type)
        self.product_type, self.kernel_type = product_type, kernel_type
        n = feature_map.num_fields
        self.embedding_dim = embedding_dim
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.pairs = PairIndex(n)
        if product_type == "kernel":
            shape = {
                "mat": (self.pairs.num_pairs, embedding_dim, embedding_dim),
                "vec": (self.pairs.num_pairs, embedding_dim),
                "num": (self.pairs.num_pairs,),
            }[kernel_type]
            self.kernel = nn.Parameter(torch.empty(*shape))
        input_dim = n * embedding_dim + product_dim(product_type, n, embedding_dim)
        self.dnn = self.dnn_tower(
            hidden_units, hidden_activations, net_dropout, batch_norm, optional=False, input_dim=input_dim
        )
        self.finish()

    def init_weights(self):
        """Kernels start at the identity (KPNN then begins as IPNN), plus small noise for the matrix form."""
        if self.product_type != "kernel":
            return
        with torch.no_grad():
            if self.kernel_type == "mat":
                eye = torch.eye(self.embedding_dim, device=self.kernel.device)
                self.kernel.copy_(eye.expand_as(self.kernel))
                self.kernel.add_(torch.randn_like(self.kernel) * 0.01)
            else:
                self.kernel.fill_(1.0)

    def interact(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Product layer p: (B, n(n-1)/2) for inner/kernel, (B, d*d) for outer."""
        if self.product_type == "outer":
            return torch.einsum("bd,be->bde", left.sum(dim=1), right.sum(dim=1)).flatten(start_dim=1)
        a, b = self.pairs.gather(left, right)  # (B, P, d) each
        if self.product_type == "inner":
            return (a * b).sum(dim=-1)
        if self.kernel_type == "mat":
            return torch.einsum("bpd,pde,bpe->bp", a, self.kernel, b)
        if self.kernel_type == "vec":
            return (a * self.kernel * b).sum(dim=-1)
        return (a * b).sum(dim=-1) * self.kernel

    def dnn_input(self, feature_emb: torch.Tensor, products: torch.Tensor) -> torch.Tensor:
        return torch.cat([feature_emb.flatten(start_dim=1), products], dim=-1)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        products = self.interact(feature_emb, feature_emb)
        return self.output(self.dnn(self.dnn_input(feature_emb, products)))


@register_model
class IPNN(PNN):
    """IPNN (Qu et al. ICDM 2016): PNN with the inner product layer (n(n-1)/2 pair-wise inner products) + DNN."""

    fixed_product_type = "inner"


@register_model
class OPNN(PNN):
    """OPNN (Qu et al. ICDM 2016): PNN with the outer product layer in its superposition form f_S f_S^T + DNN."""

    fixed_product_type = "outer"


@register_model
class KPNN(PNN):
    """KPNN (Qu et al. TOIS 2018): PNN with kernel products e_i^T K_ij e_j (kernel_type mat | vec | num) + DNN."""

    fixed_product_type = "kernel"
