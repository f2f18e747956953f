"""benchmark.metrics: fuxictr's metrics plus AP and the papers' clipped logloss."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from benchmark.metrics import evaluate_metrics, is_metric

Y_TRUE = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0], dtype=np.float64)
Y_PRED = np.array([0.9, 0.2, 0.65, 0.4, 0.4, 0.1, 0.8, 0.55, 0.3, 0.35, 0.05, 0.7])


def test_ap_matches_sklearn_and_order_is_kept():
    out = evaluate_metrics(Y_TRUE, Y_PRED, ["AP", "AUC", "logloss"])
    assert list(out) == ["AP", "AUC", "logloss"]
    assert out["AP"] == pytest.approx(average_precision_score(Y_TRUE, Y_PRED), abs=1e-12)
    assert out["AUC"] == pytest.approx(roc_auc_score(Y_TRUE, Y_PRED), abs=1e-12)
    # ties in the scores (0.4 twice) are handled as sklearn does: a step, not an interpolation
    hand = 0.0
    thresholds = sorted(set(Y_PRED), reverse=True)
    prev_recall = 0.0
    for t in thresholds:
        picked = Y_PRED >= t
        tp = float((Y_TRUE[picked] == 1).sum())
        recall, precision = tp / Y_TRUE.sum(), tp / picked.sum()
        hand += (recall - prev_recall) * precision
        prev_recall = recall
    assert out["AP"] == pytest.approx(hand, abs=1e-12)


def test_logloss_eps_clips_extreme_predictions():
    y_true = np.array([1.0, 0.0, 1.0, 0.0])
    y_pred = np.array([0.0, 1.0, 1.0, 0.0])  # two confident mistakes
    plain = evaluate_metrics(y_true, y_pred, ["logloss"])["logloss"]
    clipped = evaluate_metrics(y_true, y_pred, ["logloss"], logloss_eps=1e-7)["logloss"]
    assert clipped == pytest.approx(-(2 * math.log(1e-7) + 2 * math.log(1 - 1e-7)) / 4, rel=1e-9)
    assert plain > clipped + 5  # fuxictr 2.3.10: clipped only at float eps
    assert plain == pytest.approx(log_loss(y_true, y_pred), rel=1e-12)
    # away from 0 and 1 the clip changes nothing
    assert evaluate_metrics(Y_TRUE, Y_PRED, ["logloss"], logloss_eps=1e-7)["logloss"] == pytest.approx(
        log_loss(Y_TRUE, Y_PRED), abs=1e-15
    )


def test_metric_names():
    assert all(is_metric(m) for m in ("AUC", "logloss", "AP", "gAUC", "NDCG(k=5)"))
    assert not any(is_metric(m) for m in ("AUCC", "ap", "NDCG@5", None))


def test_ap_and_logloss_eps_reach_the_run_record(train):
    record = train("LR_tiny", "metrics=[logloss, AUC, AP]", "epochs=1")
    assert set(record["test"]) == {"logloss", "AUC", "AP"} and 0 < record["test"]["AP"] <= 1
    assert record["config"]["logloss_eps"] == 1e-7  # config/model_config/base.yaml, Base
