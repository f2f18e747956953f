"""TF4CTR (twin focus framework): its layers (``layers``: SSEM, DFM), the twin focus loss
(``twin_focus``), the model (``model``) and the wrappers on other base models (``wrappers``)."""

from .model import TF4CTR
from .twin_focus import TwinFocusLoss, TwinFocusLossMixin, twin_focus_weights
from .wrappers import TF4CTRWrapper, TwinFocusWrapper

__all__ = [
    "TF4CTR",
    "TF4CTRWrapper",
    "TwinFocusWrapper",
    "TwinFocusLoss",
    "TwinFocusLossMixin",
    "twin_focus_weights",
]
