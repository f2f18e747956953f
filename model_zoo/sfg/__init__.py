"""SFG (generative feature interaction): the GEN models (``model``) and the feature generator
(``generator``)."""

from .generator import FeatureGenerator
from .model import GEN_OF, Generative

__all__ = ["GEN_OF", "Generative", "FeatureGenerator"]
