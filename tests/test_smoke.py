"""Every `<Model>_tiny` expid trains one epoch on the tiny fixture and predicts probabilities."""

import math

import pytest

from benchmark.config import list_expids
from tests.conftest import CONFIG

TINY = [e for e in list_expids(CONFIG) if e.endswith("_tiny")]


@pytest.mark.parametrize("expid", TINY)
def test_tiny_expid_trains(train, expid):
    record = train(expid, "epochs=1")
    for split in ("valid", "test"):
        assert 0.0 <= record[split]["AUC"] <= 1.0
        assert math.isfinite(record[split]["logloss"])
    assert record["params"] > 0


def test_same_seed_same_metrics(train):
    a = train("DCN_tiny", "epochs=2", "seed=11")
    b = train("DCN_tiny", "epochs=2", "seed=11")
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    c = train("DCN_tiny", "epochs=2", "seed=12")
    assert c["test"] != a["test"]
