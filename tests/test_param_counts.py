"""Every targets cell whose paper prints #Params builds a network of that size.

Each cell is resolved exactly as ``reproduce`` runs it (the targets file's ``set:`` blocks over the row's
expid) and built on the vocabulary behind the paper's count: the authors' logged per-field vocab sizes
(IBNet's Table IV logs, tests/test_ibnet.py; TF4CTR's logs, tests/test_tf4ctr.py) or DLRM's full Kaggle
Criteo vocabulary (MaskFusion, tests/test_maskfusion.py). Models go on the meta device, so the
100M-row embedding tables take no memory. A count matches when it lies within max(0.1M, 1.5%) of the
printed value (the papers truncate or round their #Params unevenly); a count copied from an authors' log
(printed in full) must match exactly.

scripts/search_param_counts.py searches a row's hyperparameters against these counts. The tests after
those check the rest of what a paper row runs: DLF Table 2's template protocol, SFG's DeepFM biases and
FmFM's regularised pair matrices, EulerNet's dropout keys, and IBNet Tables VII-IX reusing Table IV's cells.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from unittest import mock

import pytest
import torch

from benchmark.data.synth import CRITEO_CARDINALITY
from model_zoo.testing import count_parameters, feature_map_from_vocab
from tests.conftest import CONFIG, REPO
from tests.test_ibnet import AVAZU, CRITEO, FRAPPE, MOVIELENS
from tests.test_tf4ctr import vocab as tf4ctr_vocab

TARGETS = os.path.join(REPO, "results", "targets")

_IBNET = {"avazu": {"vocab": AVAZU}, "criteo": {"vocab": CRITEO}, "movielens": {"vocab": MOVIELENS}}
_IBNET["frappe"] = {"vocab": FRAPPE}
# TF4CTR logs: fields and total vocabulary per dataset (only the sum enters the count)
_TF4CTR = {
    "frappe": {"vocab": tf4ctr_vocab(10, 5383)},
    "ml1m": {"vocab": tf4ctr_vocab(5, 9626)},
    "movielens": {"vocab": tf4ctr_vocab(3, 88_596)},
    "kkbox": {"vocab": tf4ctr_vocab(13, 227_853)},
    "criteo": {"vocab": tf4ctr_vocab(39, 910_747)},
}
_DLRM_CRITEO = {
    "criteo": {
        "vocab": {f"C{i + 1}": v for i, v in enumerate(CRITEO_CARDINALITY)},
        "numeric": [f"I{i}" for i in range(1, 14)],
    }
}
# targets file -> column -> feature_map_from_vocab arguments of the vocabulary behind the printed count
VOCABS = {
    "ibnet_table4.yaml": _IBNET,
    "ibnet_table6.yaml": _IBNET,
    "tf4ctr_table4.yaml": _TF4CTR,
    "tf4ctr_table5.yaml": _TF4CTR,
    "maskfusion_table3.yaml": _DLRM_CRITEO,
}


@dataclass(frozen=True)
class SizedCell:
    file: str
    row: str
    column: str
    expid: str
    printed: str


def parse_count(value) -> int:
    """'78.7M' -> 78,700,000; '6,083,278' -> 6,083,278."""
    text = str(value).replace(",", "").strip()
    return round(float(text[:-1]) * 1e6) if text.upper().endswith("M") else int(float(text))


def printed_params(cell: SizedCell) -> int:
    return parse_count(cell.printed)


def within(count: int, printed: int) -> bool:
    return abs(count - printed) <= max(100_000, 0.015 * printed)


@functools.cache
def _targets(path: str) -> dict:
    from benchmark.reproduce import load_targets

    return load_targets(path)


def paper_cells(path: str) -> list[SizedCell]:
    """One cell per (row, column) whose paper entry prints #Params."""
    from benchmark.reproduce import plan

    targets = _targets(os.path.abspath(path))
    cells, seen = [], set()
    for cell in plan(targets):
        printed = ((targets.get("paper") or {}).get(cell.row) or {}).get(cell.column, {}).get("params")
        if printed is None or (cell.row, cell.column) in seen:
            continue
        seen.add((cell.row, cell.column))
        cells.append(SizedCell(os.path.basename(path), cell.row, cell.column, cell.expid, str(printed)))
    return cells


def cell_params(path: str, cell: SizedCell, over: dict | None = None) -> dict:
    from benchmark.config import load_config
    from benchmark.reproduce import _as_set_args, plan

    targets = _targets(os.path.abspath(path))
    source = plan(targets, datasets=[cell.column], models=[cell.row])[0]
    sets = dict(source.sets)
    sets.update(over or {})
    return load_config(CONFIG, cell.expid, _as_set_args(sets))


def cell_count(path: str, cell: SizedCell, over: dict | None = None) -> int:
    """The cell's model, as reproduce resolves it (plus ``over``), built on the logged vocabulary."""
    from model_zoo import create_model
    from model_zoo.base import CTRModel

    params = cell_params(path, cell, over)
    spec = VOCABS[os.path.basename(path)][cell.column]
    fmap = feature_map_from_vocab(spec["vocab"], params["embedding_dim"], numeric=spec.get("numeric"))
    with mock.patch.object(CTRModel, "model_to_device", lambda self: None), torch.device("meta"):
        model = create_model({**params, "gpu": -1, "verbose": 0}, fmap)
    return count_parameters(model)


def _all_cells():
    out = []
    for name in sorted(VOCABS):
        out += paper_cells(os.path.join(TARGETS, name))
    return out


CELLS = _all_cells()


def test_every_targets_file_that_prints_params_has_a_vocabulary():
    import glob

    printing = set()
    for path in glob.glob(os.path.join(TARGETS, "*.yaml")):
        paper = _targets(os.path.abspath(path)).get("paper") or {}
        if any("params" in (entry or {}) for cols in paper.values() for entry in (cols or {}).values()):
            printing.add(os.path.basename(path))
    assert printing == set(VOCABS)


@pytest.mark.parametrize("cell", CELLS, ids=[f"{c.file[:-5]}:{c.row}:{c.column}" for c in CELLS])
def test_cell_builds_the_papers_network(cell):
    count = cell_count(os.path.join(TARGETS, cell.file), cell)
    printed = printed_params(cell)
    if not cell.printed.upper().endswith("M"):  # a count copied from the authors' log: exact
        assert count == printed
    else:
        assert within(count, printed), f"{count:,} params vs printed {cell.printed}"


def test_tolerance_and_parsing():
    assert parse_count("78.7M") == 78_700_000 and parse_count("6,083,278") == 6_083_278
    assert within(78_771_000, 78_700_000) and not within(151_219_000, 163_700_000)
    assert within(200_000, 100_000) and not within(300_000, 100_000)  # the 0.1M floor on small counts


# ---- the protocol of the paper tables' rows ------------------------------------------------------------


def _resolved(name: str, rows=None, columns=None) -> list[tuple]:
    from benchmark.config import load_config
    from benchmark.reproduce import _as_set_args, plan

    targets = _targets(os.path.join(TARGETS, name))
    seen, out = set(), []
    for cell in plan(targets, datasets=columns, models=rows):
        if (cell.row, cell.column) not in seen:
            seen.add((cell.row, cell.column))
            out.append((cell, load_config(CONFIG, cell.expid, _as_set_args(cell.sets))))
    return out


def test_dlf_table2_baselines_run_the_authors_template():
    """Embedding/net L2 0, dropout 0 under every key a model reads, monitor AUC - logloss (SAM's template:
    AUC), DCNv2's stacked/parallel MLP 3x500 (the runner resizes only dnn_hidden_units)."""
    cells = _resolved("dlf_table2.yaml")
    assert {c.row for c, _ in cells} >= {"FM", "SAM", "DCNv2", "DeepFM", "FinalMLP", "Wukong", "DLF"}
    for cell, params in cells:
        assert params["embedding_regularizer"] == 0 and params["net_regularizer"] == 0, cell
        monitor = "AUC" if cell.row == "SAM" else {"AUC": 1, "logloss": -1}
        assert params["monitor"] == monitor and params["monitor_mode"] == "max", cell
        for key, value in params.items():
            if key.endswith("dropout") and key != "cl_mask_ratio":
                assert value in (0, [0, 0]), (cell, key, value)
    dcnv2 = {c.column: p for c, p in cells if c.row == "DCNv2"}
    assert all(
        p["dnn_hidden_units"] == [500, 500, 500] and p["num_cross_layers"] == 3 for p in dcnv2.values()
    )


def _tiny_map():
    return feature_map_from_vocab({"a": 7, "b": 9, "c": 5}, 4)


def _build(params: dict):
    from model_zoo import create_model

    over = {"embedding_dim": 4, "dnn_hidden_units": [8], "gpu": -1, "verbose": 0}
    return create_model({**params, **over}, _tiny_map())


def test_sfg_deepfm_rows_have_the_lr_bias_and_the_output_bias():
    cells = _resolved("sfg_table1.yaml", rows=["DeepFM DIS", "DeepFM GEN"])
    assert len(cells) == 4
    for cell, params in cells:
        assert params["lr_bias"] is True, cell
        model = _build(params)
        assert model.lr_layer.bias is not None and model.dnn.mlp[-1].bias is not None
        plain = _build({**params, "lr_bias": False})
        assert plain.lr_layer.bias is None and count_parameters(model) == count_parameters(plain) + 1


def test_sfg_fmfm_pair_matrices_take_the_net_regulariser():
    """The SFG authors pass FmFM one `regularizer` for the embeddings and the net: the pair matrices M_ij
    (and GEN's encoder) are L2-regularised with the embeddings' lambda (fuxictr's net term)."""
    cells = _resolved("sfg_table1.yaml", rows=["FmFM DIS", "FmFM GEN"])
    assert len(cells) == 4
    for cell, params in cells:
        lam = params["embedding_regularizer"]
        assert lam > 0 and params["net_regularizer"] == lam, cell
        model = _build(params)
        with torch.no_grad():
            full = model.regularization_loss()
            norm = model.field_transform.pow(2).sum()
            model.field_transform.zero_()
            assert float(full - model.regularization_loss()) == pytest.approx(lam / 2 * float(norm), rel=1e-4)


def test_eulernet_gets_the_tables_dropout_through_its_own_keys():
    cells = _resolved("tf4ctr_table4.yaml", rows=["EulerNet", "DCN"])
    dropout = {c.column: p["net_dropout"] for c, p in cells if c.row == "DCN"}
    assert set(dropout.values()) == {0.1, 0.2}
    for cell, params in cells:
        if cell.row == "EulerNet":
            assert params["net_ex_dropout"] == params["net_im_dropout"] == dropout[cell.column], cell
            assert "net_dropout" not in params or params["net_dropout"] == 0


_BOOKKEEPING = {"report_name", "table_name", "table_column"}


def _without_bookkeeping(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in _BOOKKEEPING}


@pytest.mark.parametrize(
    "name,rows",
    [
        (
            "ibnet_table7_8.yaml",
            {
                f"{m} ReLU": m
                for m in (
                    "DNN",
                    "WideDeep",
                    "xDeepFM",
                    "AutoIntPlus",
                    "AFNPlus",
                    "DCNv2",
                    "CL4CTR",
                    "FinalMLP",
                )
            },
        ),
        ("ibnet_table9.yaml", {m: m for m in ("DNN", "DeepFM", "AutoIntPlus", "WideDeep")}),
    ],
)
def test_ibnet_tables_reuse_table4_networks(name, rows):
    """Rows of Tables VII-IX that are Table IV's runs (ReLU activations, plain bases) resolve to the very
    config of their Table IV cell, sizes found for the printed #Params included."""
    table4 = {(c.row, c.column): p for c, p in _resolved("ibnet_table4.yaml")}
    cells = _resolved(name, rows=list(rows))
    assert len(cells) >= len(rows)
    for cell, params in cells:
        assert _without_bookkeeping(params) == _without_bookkeeping(table4[(rows[cell.row], cell.column)]), (
            cell
        )
