"""Building blocks that more than one model family uses (a family's own layers live in its package)."""

from .activations import Mice, make_activation, make_activations
from .losses import LOSSES, get_loss_fn
from .mlp import MLP

__all__ = ["Mice", "make_activation", "make_activations", "MLP", "LOSSES", "get_loss_fn"]
