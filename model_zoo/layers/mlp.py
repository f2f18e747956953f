"""The zoo's MLP: fuxictr's ``MLP_Block`` with per-layer activation instances from config."""

from __future__ import annotations

from fuxictr.pytorch.layers import MLP_Block

from .activations import activation_param_count, make_activations


class MLP(MLP_Block):
    """``MLP_Block`` whose ``hidden_activations`` may name any zoo activation (incl. ``mice``).

    ``activation_options`` are forwarded to the activation factory (e.g. ``mice_alpha_init``).
    """

    def __init__(self, input_dim, hidden_units=(), hidden_activations="relu", output_dim=None,
                 output_activation=None, dropout_rates=0.0, batch_norm=False, bn_only_once=False,
                 use_bias=True, activation_options=None):
        hidden_units = list(hidden_units or [])
        acts = make_activations(hidden_activations, hidden_units, **(activation_options or {}))
        super().__init__(input_dim, hidden_units=hidden_units, hidden_activations=acts,
                         output_dim=output_dim, output_activation=output_activation,
                         dropout_rates=dropout_rates, batch_norm=batch_norm, bn_only_once=bn_only_once,
                         use_bias=use_bias)


def mlp_param_count(input_dim, hidden_units, output_dim=None, batch_norm=False, activation="relu",
                    use_bias=True) -> int:
    """Closed-form parameter count of ``MLP`` (for the zoo's parameter-count tests)."""
    dims = [input_dim] + list(hidden_units)
    total = 0
    for i in range(len(hidden_units)):
        total += dims[i] * dims[i + 1] + (dims[i + 1] if use_bias else 0)
        total += 2 * dims[i + 1] if batch_norm else 0
        act = activation[i] if isinstance(activation, (list, tuple)) else activation
        total += activation_param_count(act, dims[i + 1])
    if output_dim is not None:
        total += dims[-1] * output_dim + (output_dim if use_bias else 0)
    return total
