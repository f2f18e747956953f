"""Losses selectable with ``loss:`` by every model (they take probabilities, like fuxictr's BCE).

- ``binary_crossentropy`` / ``bce``: fuxictr's ``F.binary_cross_entropy``.
- ``focal_loss``: mean[(1 - p_t)^gamma * BCE], gamma = ``focal_gamma`` (default 2), no alpha term
  (TF4CTR Table II baseline, paper Sec. V-B).
- ``r_ce_loss``: mean[sg(p_t)^beta * BCE], beta = ``rce_beta`` (default 0.01), stop-gradient weight
  (R-CE of Wang et al., ADT; TF4CTR Table II baseline).
"""

from __future__ import annotations

import functools

import torch.nn.functional as F

from ..options import check_choice

EPS = 1e-7


def _pt(y_pred, y_true):
    return y_true * y_pred + (1 - y_true) * (1 - y_pred)


def focal_loss(y_pred, y_true, reduction="mean", gamma=2.0):
    bce = F.binary_cross_entropy(y_pred, y_true, reduction="none")
    loss = (1 - _pt(y_pred, y_true)).pow(gamma) * bce
    return loss.mean() if reduction == "mean" else loss


def r_ce_loss(y_pred, y_true, reduction="mean", beta=0.01):
    bce = F.binary_cross_entropy(y_pred, y_true, reduction="none")
    weight = _pt(y_pred, y_true).detach().clamp_min(EPS).pow(beta)
    loss = weight * bce
    return loss.mean() if reduction == "mean" else loss


def bce_loss(y_pred, y_true, reduction="mean"):
    return F.binary_cross_entropy(y_pred, y_true, reduction=reduction)


LOSSES = {
    "binary_crossentropy": bce_loss,
    "binary_cross_entropy": bce_loss,
    "bce": bce_loss,
    "focal_loss": focal_loss,
    "focal": focal_loss,
    "r_ce_loss": r_ce_loss,
    "rce": r_ce_loss,
    "mse": lambda y_pred, y_true, reduction="mean": F.mse_loss(y_pred, y_true, reduction=reduction),
}


def get_loss_fn(name: str, **params):
    """The loss function for ``loss: name``; ``focal_gamma``/``rce_beta`` come from the config."""
    fn = LOSSES[check_choice("loss", str(name).lower(), tuple(sorted(LOSSES)))]
    if fn is focal_loss:
        return functools.partial(fn, gamma=float(params.get("focal_gamma", 2.0)))
    if fn is r_ce_loss:
        return functools.partial(fn, beta=float(params.get("rce_beta", 0.01)))
    return fn
