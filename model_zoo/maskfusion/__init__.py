"""MaskFusion: the model on its nine hosts (``model``) and the fusion layers (``layers``)."""

from .layers import CrossFusionController, FusedLinear, MaskFusionLayer, SmoothL0Gate, instance_norm
from .model import DENSE_FIELD, HOSTS, MASKFUSION_CLASSES, VARIANTS, FusionSites, MaskFusion, parse_config

__all__ = [
    "MaskFusion",
    "FusionSites",
    "HOSTS",
    "MASKFUSION_CLASSES",
    "VARIANTS",
    "DENSE_FIELD",
    "parse_config",
    "MaskFusionLayer",
    "FusedLinear",
    "CrossFusionController",
    "SmoothL0Gate",
    "instance_norm",
]
