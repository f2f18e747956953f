import pytest

from benchmark.errors import CTRBenchError
from benchmark.report import build_table, relaimp_auc, relaimp_loss, render


def test_relaimp_on_ibnet_table4():
    # Avazu: IBNet AUC 79.4526 vs MaskNet 79.3969 -> +0.19%
    assert round(relaimp_auc(79.4526, 79.3969), 2) == 0.19
    assert round(relaimp_auc(0.794526, 0.793969), 2) == 0.19
    # Frappe: IBNet Logloss 0.139537 vs FinalMLP 0.146706 -> -4.88%
    assert round(relaimp_loss(0.139537, 0.146706), 2) == -4.89 or round(relaimp_loss(0.139537, 0.146706), 2) == -4.88
    assert f"{relaimp_loss(0.139537, 0.146706):.2f}" in ("-4.89", "-4.88")


def rec(model, ds, seed, auc, loss, params=100):
    return {"report_name": model, "model": model, "dataset_id": ds, "seed": seed, "params": params,
            "test": {"AUC": auc, "logloss": loss}}


def test_table_mean_std_and_relaimp():
    records = [rec("LR", "a", 1, 0.70, 0.50), rec("LR", "a", 2, 0.72, 0.48),
               rec("DCN", "a", 1, 0.80, 0.40), rec("DCN", "a", 2, 0.82, 0.42),
               rec("DCN", "b", 1, 0.90, 0.30)]
    table = build_table(records, baseline="LR")
    cell = table["cells"][("DCN", "a")]
    assert cell["AUC"] == pytest.approx(0.81) and cell["AUC_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert cell["relaimp_auc"] == pytest.approx(((0.81 - 0.5) / (0.71 - 0.5) - 1) * 100)
    assert cell["relaimp_loss"] == pytest.approx((0.41 - 0.49) / 0.49 * 100)
    assert "relaimp_auc" not in table["cells"][("DCN", "b")]     # no LR record on b
    md = render(table, "md")
    assert "| DCN | 0.410000 ± 0.014142 | 81.0000 ± 1.4142 |" in md
    assert render(table, "csv").splitlines()[0].startswith("Model,a Logloss,a AUC(%)")
    assert r"\pm" in render(table, "latex")


def test_empty_and_bad_baseline():
    with pytest.raises(CTRBenchError):
        build_table([])
    with pytest.raises(CTRBenchError, match="--baseline X"):
        build_table([rec("LR", "a", 1, .7, .5)], baseline="X")
