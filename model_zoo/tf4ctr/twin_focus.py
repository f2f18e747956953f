"""Twin Focus (TF) loss of TF4CTR (Li et al., arXiv 2405.03167, Eq. 7 and 12), reusable by any model.

Per sample, with p_t the probability a head assigns to the true class and BCE = -log p_t:

    L_simple  = mean[(c + p_t^s)^gamma     * BCE(sigma(z_s), y)]    (weight grows with p_t: easy samples)
    L_complex = mean[(2 - c - p_t^c)^gamma * BCE(sigma(z_c), y)]    (weight shrinks with p_t: hard samples)
    L_TF      = alpha * L_simple + (1 - alpha) * L_complex

The modulating factors are not detached (as in the authors' released code and in focal loss).
The two weights cross at p_t = 1 - c. The paper restricts c to [0, 1]; the authors' KKBox logs
also used c = 1.2, which makes the complex base negative for p_t > 0.8. ``allow_any_c`` admits such
values and clamps both bases at 0 (so a non-integer gamma never produces NaN).

A model uses it by returning ``logit_simple`` and ``logit_complex`` from ``forward`` and mixing in
``TwinFocusLossMixin`` before ``CTRModel``: its ``add_loss`` is the configured main loss on
``y_pred`` plus ``L_TF`` on the two auxiliary logits (no second forward pass).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ModelConfigError


def true_class_prob(prob: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """p_t = y * p + (1 - y) * (1 - p)."""
    return y_true * prob + (1 - y_true) * (1 - prob)


def twin_focus_weights(p_t: torch.Tensor, c: float, gamma: float, clamp: bool = False):
    """The simple and complex modulating factors (c + p_t)^gamma and (2 - c - p_t)^gamma."""
    simple_base = c + p_t
    complex_base = (2.0 - c) - p_t
    if clamp:
        simple_base, complex_base = simple_base.clamp_min(0), complex_base.clamp_min(0)
    return simple_base.pow(gamma), complex_base.pow(gamma)


class TwinFocusLoss:
    """alpha * L_simple(sigma(z_s), y) + (1 - alpha) * L_complex(sigma(z_c), y); see module docstring."""

    def __init__(
        self,
        alpha: float = 0.25,
        c: float = 0.8,
        gamma: float = 1.0,
        allow_any_c: bool = False,
        source: str = "config",
    ):
        for key, value in (("alpha", alpha), ("c", c), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ModelConfigError(f"{source}: {key}={value!r} must be a number")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ModelConfigError(
                f"{source}: alpha={alpha} must lie in [0, 1] (weight of the simple-encoder loss)"
            )
        if float(gamma) < 0:
            raise ModelConfigError(f"{source}: gamma={gamma} must be >= 0 (the paper uses 1, 2 or 3)")
        if not 0.0 <= float(c) <= 1.0 and not allow_any_c:
            raise ModelConfigError(
                f"{source}: c={c} is outside [0, 1] (TF4CTR Eq. 7); use a value in [0, 1] or "
                f"set tf_allow_any_c: True to accept it with the loss bases clamped at 0"
            )
        self.alpha, self.c, self.gamma = float(alpha), float(c), float(gamma)
        self.clamp = bool(allow_any_c)

    def parts(self, logit_simple, logit_complex, y_true):
        """(L_simple, L_complex) as scalars."""
        y_true = y_true.to(torch.promote_types(logit_simple.dtype, torch.float32))  # float64 stays
        losses = []
        for k, logit in enumerate((logit_simple, logit_complex)):
            prob = torch.sigmoid(logit)
            bce = F.binary_cross_entropy(prob, y_true, reduction="none")
            w_simple, w_complex = twin_focus_weights(
                true_class_prob(prob, y_true), self.c, self.gamma, self.clamp
            )
            losses.append(((w_simple if k == 0 else w_complex) * bce).mean())
        return losses[0], losses[1]

    def __call__(self, logit_simple, logit_complex, y_true):
        simple, complex_ = self.parts(logit_simple, logit_complex, y_true)
        return self.alpha * simple + (1 - self.alpha) * complex_


class TwinFocusLossMixin:
    """``add_loss`` = main loss on ``y_pred`` + ``self.twin_focus`` on the returned auxiliary logits.

    Put it before ``CTRModel`` in the bases and set ``self.twin_focus`` (a ``TwinFocusLoss``, or
    None to train with the main loss only) in ``__init__``.
    """

    twin_focus: TwinFocusLoss | None = None

    def add_loss(self, return_dict, y_true):
        loss = super().add_loss(return_dict, y_true)
        if self.twin_focus is not None:
            loss = loss + self.twin_focus(return_dict["logit_simple"], return_dict["logit_complex"], y_true)
        return loss
