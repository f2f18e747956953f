"""IBNet (information-bottleneck cross network): the model (``model``), its mask augmentation
(``masks``) and its contrastive loss (``contrastive``)."""

from .contrastive import ibcl_bounds, ibcl_loss
from .masks import MASK_TYPES, MaskAugmentation, RelaxedBernoulliMask, fill_mask
from .model import IBNet, IBNetBranch, IBNetFramework

__all__ = [
    "IBNet",
    "IBNetBranch",
    "IBNetFramework",
    "MaskAugmentation",
    "RelaxedBernoulliMask",
    "fill_mask",
    "MASK_TYPES",
    "ibcl_loss",
    "ibcl_bounds",
]
