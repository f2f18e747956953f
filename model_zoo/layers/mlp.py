"""The zoo's MLP: fuxictr's ``MLP_Block`` with per-layer activation instances from config."""

from __future__ import annotations

from fuxictr.pytorch.layers import MLP_Block

from .activations import make_activations


class MLP(MLP_Block):
    """``MLP_Block`` whose ``hidden_activations`` may name any zoo activation (incl. ``mice``).

    ``activation_options`` are forwarded to the activation factory (e.g. ``mice_alpha_init``).
    """

    def __init__(
        self,
        input_dim,
        hidden_units=(),
        hidden_activations="relu",
        output_dim=None,
        output_activation=None,
        dropout_rates=0.0,
        batch_norm=False,
        bn_only_once=False,
        use_bias=True,
        activation_options=None,
    ):
        hidden_units = list(hidden_units or [])
        acts = make_activations(hidden_activations, hidden_units, **(activation_options or {}))
        super().__init__(
            input_dim,
            hidden_units=hidden_units,
            hidden_activations=acts,
            output_dim=output_dim,
            output_activation=output_activation,
            dropout_rates=dropout_rates,
            batch_norm=batch_norm,
            bn_only_once=bn_only_once,
            use_bias=use_bias,
        )
