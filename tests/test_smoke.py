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


# tiny: 1,600 train rows in batches of 256 = 7 steps an epoch
@pytest.mark.parametrize(
    "sets,steps",
    [
        ([], [7, 14]),  # once per epoch
        (["eval_steps=7"], [7, 14]),
        (["eval_steps=3"], [3, 6, 9, 12]),  # as fuxictr: no extra validation at an epoch's end
        (["eval_steps=5"], [5, 10]),
        (["eval_steps=10"], [10]),  # the first epoch ends without a validation
    ],
)
def test_validations_happen_every_eval_steps_only(train, sets, steps):
    record = train("DCN_tiny", "epochs=2", "early_stop_patience=10", *sets)
    assert [h["step"] for h in record["history"]] == steps


def test_eval_steps_beyond_the_run_is_one_line_error(train):
    from benchmark.errors import CTRBenchError

    with pytest.raises(CTRBenchError, match="eval_steps=15: the run has only 14 steps"):
        train("DCN_tiny", "epochs=2", "eval_steps=15")
