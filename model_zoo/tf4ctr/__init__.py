"""TF4CTR (twin focus framework): the model and its wrappers (``model``) and the twin focus loss
(``twin_focus``)."""

from .model import TF4CTR, TF4CTRWrapper, TwinFocusWrapper
from .twin_focus import TwinFocusLoss, TwinFocusLossMixin, twin_focus_weights

__all__ = [
    "TF4CTR",
    "TF4CTRWrapper",
    "TwinFocusWrapper",
    "TwinFocusLoss",
    "TwinFocusLossMixin",
    "twin_focus_weights",
]
