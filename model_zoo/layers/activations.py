"""Hidden activations by name, one fresh module per layer.

Every MLP in the zoo takes ``hidden_activations`` from config, so activation studies (IBNet Tables
VII/VIII) are a config change. Parametric activations (Mice, Dice, PReLU) own per-channel parameters,
which is why ``make_activations`` builds one instance per hidden layer (fuxictr's ``MLP_Block`` would
repeat a single instance across layers).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from fuxictr.pytorch.layers import Dice

from ..options import check_choice


class Mice(nn.Module):
    """Mice (IBNet eq. 23; the authors' ``PBMish``), channel-wise over a (B, H) input.

    ``f(x) = p*x + alpha*(1-p)*b(x)*tanh(softplus(x/tau))`` with ``b = BN(x)`` (affine-free,
    eps 1e-9, momentum 0.01) and ``p = sigmoid(b)``. ``alpha`` and ``tau`` are learnable per channel
    (``learnable_tau: False`` freezes tau as the paper's Table I reads). ``alpha_init`` is 0 for the
    Avazu/MovieLens/Frappe runs and 1 for Criteo. ``double_bn_update`` replicates the authors' code,
    which calls the BN module twice per forward (the running statistics move twice per step).
    """

    def __init__(
        self,
        num_channels: int,
        alpha_init: float = 0.0,
        tau_init: float = 1.0,
        learnable_tau: bool = True,
        double_bn_update: bool = True,
    ):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_channels, affine=False, eps=1e-9, momentum=0.01)
        self.alpha_init, self.tau_init = float(alpha_init), float(tau_init)
        self.alpha = nn.Parameter(torch.full((num_channels,), self.alpha_init))
        tau = torch.full((num_channels,), self.tau_init)
        if learnable_tau:
            self.tau = nn.Parameter(tau)
        else:
            self.register_buffer("tau", tau)
        self.double_bn_update = double_bn_update

    def init_weights(self):  # called by BaseModel.reset_parameters
        with torch.no_grad():
            self.alpha.fill_(self.alpha_init)
            self.tau.fill_(self.tau_init)

    def forward(self, x):
        b = self.bn(x)
        if self.double_bn_update and self.training:
            b = self.bn(x)
        p = torch.sigmoid(b)
        return p * x + self.alpha * (1 - p) * b * torch.tanh(F.softplus(x / self.tau))


def _mice(alpha):
    return lambda dim, /, **kw: Mice(
        dim,
        alpha_init=kw.get("mice_alpha_init", alpha),
        learnable_tau=kw.get("mice_learnable_tau", True),
        double_bn_update=kw.get("mice_double_bn_update", True),
    )


_FACTORIES = {
    "relu": lambda dim, /, **kw: nn.ReLU(),
    "mice": _mice(0.0),
    "mice_a0": _mice(0.0),
    "mice_a1": _mice(1.0),
    "pbmish_avazu": _mice(0.0),  # the authors' names
    "pbmish_criteo": _mice(1.0),
    "dice": lambda dim, /, **kw: Dice(dim),
    "prelu": lambda dim, /, **kw: nn.PReLU(dim, init=0.1),  # fuxictr get_activation: per channel, 0.1
    "gelu": lambda dim, /, **kw: nn.GELU(),
    "swish": lambda dim, /, **kw: nn.SiLU(),
    "silu": lambda dim, /, **kw: nn.SiLU(),
    "mish": lambda dim, /, **kw: nn.Mish(),
    "tanh": lambda dim, /, **kw: nn.Tanh(),
    "sigmoid": lambda dim, /, **kw: nn.Sigmoid(),
    "leaky_relu": lambda dim, /, **kw: nn.LeakyReLU(),
    "elu": lambda dim, /, **kw: nn.ELU(),
    "selu": lambda dim, /, **kw: nn.SELU(),
    "identity": lambda dim, /, **kw: nn.Identity(),
    "linear": lambda dim, /, **kw: nn.Identity(),
}

ACTIVATIONS = tuple(_FACTORIES)


def make_activation(name, dim: int, /, **options) -> nn.Module:
    """One activation module for a layer of width ``dim``; a module instance passes through."""
    if isinstance(name, nn.Module):
        return name
    if name is None:
        return nn.Identity()
    return _FACTORIES[check_choice("activation", str(name).lower(), ACTIVATIONS)](dim, **options)


def make_activations(names, hidden_units, /, **options) -> list[nn.Module]:
    """Distinct activation modules for each hidden layer (``names`` may be one name or a list)."""
    if not isinstance(names, (list, tuple)):
        names = [names] * len(hidden_units)
    return [make_activation(n, d, **options) for n, d in zip(names, hidden_units)]
