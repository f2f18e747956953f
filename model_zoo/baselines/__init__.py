"""The baseline families, one module each (FuxiCTR's model zoo and the papers' baselines)."""
