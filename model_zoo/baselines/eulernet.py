"""EulerNet (Tian et al., SIGIR 2023): adaptive-order feature interactions in the complex space.

Each field embedding e_j becomes the complex vector mu_j * exp(i e_j) = mu_j cos(e_j) + i mu_j sin(e_j)
(a learnable modulus mu_j per field, the embedding as the phase). An Euler interaction layer maps n
complex vectors to m:

- explicit part (Euler's formula turns products of powers into linear combinations):
  with lambda_j = |r_j + i p_j| and theta_j = atan2(p_j, r_j),
  ``log rho_k = sum_j alpha_kj log lambda_j + delta_k`` and ``psi_k = sum_j alpha_kj theta_j + delta'_k``,
  i.e. the interaction prod_j (lambda_j e^{i theta_j})^alpha_kj with learnable (real) orders
  alpha (n x m, shared by the embedding dimensions); back to ``rho_k cos psi_k + i rho_k sin psi_k``;
- implicit part: ``ReLU(W r + b)`` and ``ReLU(W p + b)`` on the flattened real and imaginary
  parts with one shared linear map W (n*d -> m*d);
- output: explicit + implicit (optionally LayerNorm over d, ``apply_norm``).

Layers are stacked with widths ``order_list``; the logit is a linear layer on the real plus the
imaginary part of the last layer. ``net_ex_dropout`` drops terms of the explicit combination (the
same (field, dim) terms of the log-modulus and the phase), ``net_im_dropout`` the implicit output.
The embeddings are phases: with fuxictr's N(0, 1e-4) init every field starts near the same complex
number and small data sets need many steps; ``embedding_initializer`` (a fuxictr initializer string)
can start them wider.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError


class EulerInteractionLayer(nn.Module):
    """n complex vectors (real, imag: (B, n, d)) -> m complex vectors (B, m, d)."""

    def __init__(
        self,
        num_in: int,
        num_out: int,
        embedding_dim: int,
        apply_norm: bool = False,
        ex_dropout: float = 0.0,
        im_dropout: float = 0.0,
        eps: float = 1e-8,
    ):
        super().__init__()
        self.num_in, self.num_out, self.embedding_dim = num_in, num_out, embedding_dim
        self.orders = nn.Parameter(torch.empty(num_in, num_out))
        self.log_modulus_bias = nn.Parameter(torch.empty(1, num_out, embedding_dim))
        self.phase_bias = nn.Parameter(torch.empty(1, num_out, embedding_dim))
        self.implicit = nn.Linear(num_in * embedding_dim, num_out * embedding_dim)
        self.norm = nn.LayerNorm(embedding_dim) if apply_norm else None
        self.ex_dropout, self.im_dropout, self.eps = float(ex_dropout), float(im_dropout), eps
        self.init_weights()

    def init_weights(self):
        # orders start near 1/n: each output begins as a geometric mean of the inputs
        nn.init.normal_(self.orders, mean=1.0 / self.num_in, std=0.01)
        nn.init.normal_(self.log_modulus_bias, std=0.01)
        nn.init.normal_(self.phase_bias, std=0.01)

    def explicit(self, real: torch.Tensor, imag: torch.Tensor):
        log_modulus = 0.5 * torch.log(real.pow(2) + imag.pow(2) + self.eps)
        phase = torch.atan2(imag, real)
        if self.training and self.ex_dropout > 0:
            keep = F.dropout(torch.ones_like(phase), p=self.ex_dropout, training=True)
            log_modulus, phase = log_modulus * keep, phase * keep
        log_rho = torch.einsum("bnd,nm->bmd", log_modulus, self.orders) + self.log_modulus_bias
        psi = torch.einsum("bnd,nm->bmd", phase, self.orders) + self.phase_bias
        rho = torch.exp(log_rho)
        return rho * torch.cos(psi), rho * torch.sin(psi)

    def implicit_part(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.implicit(x.flatten(start_dim=1)))
        out = F.dropout(out, p=self.im_dropout, training=self.training) if self.im_dropout > 0 else out
        return out.view(-1, self.num_out, self.embedding_dim)

    def forward(self, real: torch.Tensor, imag: torch.Tensor):
        ex_real, ex_imag = self.explicit(real, imag)
        out_real = ex_real + self.implicit_part(real)
        out_imag = ex_imag + self.implicit_part(imag)
        if self.norm is not None:
            out_real, out_imag = self.norm(out_real), self.norm(out_imag)
        return out_real, out_imag


@register_model
class EulerNet(CTRModel):
    """EulerNet (Tian et al. SIGIR 2023): stacked Euler interaction layers (explicit complex-exponent orders + implicit linear part).

    Attributes: ``embedding_layer`` (``field_embedding``), ``modulus`` (mu, one per field),
    ``euler_layers`` (ModuleList of ``EulerInteractionLayer``), ``fc`` (prediction layer). No DNN.
    ``forward`` = ``embed`` -> ``to_complex`` -> ``interact`` -> ``fc(real + imag)``.
    """

    def __init__(
        self,
        feature_map,
        model_id="EulerNet",
        embedding_dim=10,
        order_list=(20,),
        apply_norm=False,
        net_ex_dropout=0.0,
        net_im_dropout=0.0,
        embedding_initializer="partial(nn.init.normal_, std=1e-4)",
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        orders = [int(m) for m in (order_list or [])]
        if not orders or min(orders) < 1:
            raise ModelConfigError(
                "order_list must list the number of complex vectors of each Euler "
                "interaction layer, e.g. [20, 20]"
            )
        num_fields = feature_map.num_fields
        self.embedding_layer = self.field_embedding(
            feature_map, embedding_dim, embedding_initializer=embedding_initializer
        )
        self.modulus = nn.Parameter(torch.ones(1, num_fields, 1))
        shapes = [num_fields] + orders
        self.euler_layers = nn.ModuleList(
            [
                EulerInteractionLayer(
                    shapes[i], shapes[i + 1], embedding_dim, apply_norm, net_ex_dropout, net_im_dropout
                )
                for i in range(len(orders))
            ]
        )
        self.fc = nn.Linear(orders[-1] * embedding_dim, 1)
        self.finish()

    def to_complex(self, feature_emb: torch.Tensor):
        return self.modulus * torch.cos(feature_emb), self.modulus * torch.sin(feature_emb)

    def interact(self, real: torch.Tensor, imag: torch.Tensor):
        for layer in self.euler_layers:
            real, imag = layer(real, imag)
        return real, imag

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        real, imag = self.interact(*self.to_complex(self.embed(X)))
        return self.output(self.fc((real + imag).flatten(start_dim=1)))
