"""DLF: the model (``model``) and its token mixing and block attention fusion layers (``block_fusion``)."""

from .block_fusion import BlockAttentionFusion, GatedResidual, TokenMix
from .model import DLF, DLFLayer, InteractionBlock, dlf_settings

__all__ = [
    "DLF",
    "DLFLayer",
    "InteractionBlock",
    "dlf_settings",
    "BlockAttentionFusion",
    "GatedResidual",
    "TokenMix",
]
