"""Evaluation metrics: fuxictr's ``evaluate_metrics`` plus ``AP`` and a clipped logloss.

- Every metric fuxictr computes (``logloss``/``binary_crossentropy``, ``AUC``, and with a ``group_id``
  column ``gAUC``, ``avgAUC``, ``MRR``, ``NDCG(k=N)``) comes from ``fuxictr.metrics.evaluate_metrics``.
- ``AP``: average precision, sklearn's ``average_precision_score`` (MaskFusion Tables 5/8).
- ``logloss_eps``: predictions are clipped to ``[eps, 1 - eps]`` before the logloss, as the papers'
  FuxiCTR forks did (eps = 1e-7); fuxictr 2.3.10 no longer clips, so a single prediction of exactly 0
  or 1 on the wrong label dominates the mean. ``None`` or 0 keeps fuxictr's unclipped value. The
  setting is part of the resolved config, so each run record carries it.

Results keep the order in which the metrics were asked for.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np

LOGLOSS = ("logloss", "binary_crossentropy")
GROUP_METRICS = ("gAUC", "avgAUC", "MRR")
METRICS = (*LOGLOSS, "AUC", "AP", *GROUP_METRICS)
_NDCG = re.compile(r"^NDCG\(k=\d+\)$")


def is_metric(name) -> bool:
    """Whether ``name`` is a metric this module computes."""
    return isinstance(name, str) and (name in METRICS or bool(_NDCG.match(name)))


def needs_group(name: str) -> bool:
    """Metrics averaged over the groups of a ``group_id`` column."""
    return name in GROUP_METRICS or name.startswith("NDCG")


def logloss(y_true, y_pred, eps: float | None = None) -> float:
    """Binary cross-entropy (sklearn ``log_loss``) of predictions clipped to [eps, 1 - eps]."""
    from sklearn.metrics import log_loss

    y_pred = np.asarray(y_pred, dtype=np.float64)
    if eps:
        y_pred = np.clip(y_pred, float(eps), 1.0 - float(eps))
    return float(log_loss(y_true, y_pred, labels=[0, 1]))


def average_precision(y_true, y_pred) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y_true, y_pred))


def evaluate_metrics(y_true, y_pred, metrics, group_id=None, logloss_eps: float | None = None) -> OrderedDict:
    """``fuxictr.metrics.evaluate_metrics`` with ``AP`` and the clipped logloss; same return type."""
    from fuxictr.metrics import evaluate_metrics as fuxictr_metrics

    metrics = list(metrics)
    ours = {name for name in metrics if name == "AP" or (name in LOGLOSS and logloss_eps)}
    delegated = [name for name in metrics if name not in ours]
    values = dict(fuxictr_metrics(y_true, y_pred, delegated, group_id)) if delegated else {}
    for name in ours:
        values[name] = (
            average_precision(y_true, y_pred) if name == "AP" else logloss(y_true, y_pred, logloss_eps)
        )
    return OrderedDict((name, values[name]) for name in metrics)
