"""LR: logistic regression over all features (one weight per feature value plus a bias)."""

from .. import register_model
from ..base import CTRModel


@register_model
class LR(CTRModel):
    """Logistic regression: sum of per-value weights plus bias (the linear baseline)."""

    def __init__(self, feature_map, model_id="LR", **kwargs):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.lr_layer = self.logistic_regression(feature_map, use_bias=True)
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        return self.output(self.lr_layer(X))
