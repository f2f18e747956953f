"""ctrbench: a config-driven CTR prediction benchmark built on FuxiCTR."""

__version__ = "0.1.0"
