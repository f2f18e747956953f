"""Building blocks written once and shared by every model family."""

from .activations import Mice, make_activation, make_activations
from .mlp import MLP, mlp_param_count
from .losses import LOSSES, get_loss_fn

__all__ = ["Mice", "make_activation", "make_activations", "MLP", "mlp_param_count", "LOSSES",
           "get_loss_fn"]
