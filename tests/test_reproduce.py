"""The reproduce engine on a small targets file, and every paper table in smoke mode."""

import glob
import json
import os

import pytest
import yaml

from benchmark.reproduce import check, load_targets, plan, reproduce
from tests.conftest import CONFIG, REPO

TARGETS = {
    "name": "mini",
    "title": "Mini table",
    "metrics": ["logloss", "AUC"],
    "auc_tolerance": 0.1,
    "baseline": {"a": "LR"},
    "seeds": [1, 2],
    "datasets": {
        "a": {"dataset_id": "tiny", "smoke": "tiny"},
        "absent": {"dataset_id": "Frappe_x1", "smoke": "tiny_cat"},
    },
    "set": {"all": {"epochs": 1, "batch_size": 512, "verbose": 0}},
    "rows": {"LR": {"expid": "LR_tiny"}, "DCN": {"expid": "DCN_tiny", "set": {"a": {"num_cross_layers": 1}}}},
    "paper": {"DCN": {"a": {"logloss": 0.5, "AUC": 55.0, "params": "6K"}}},
}


@pytest.fixture
def targets_file(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(TARGETS))
    return str(path)


def test_plan_expands_rows_columns_seeds(targets_file):
    cells = plan(load_targets(targets_file))
    assert len(cells) == 2 * 2 * 2
    dcn = [c for c in cells if c.row == "DCN" and c.column == "a"][0]
    assert dcn.sets["num_cross_layers"] == 1 and dcn.sets["dataset_id"] == "tiny"
    smoke = plan(load_targets(targets_file), smoke=True)
    assert {c.sets["dataset_id"] for c in smoke} == {"tiny", "tiny_cat"}
    assert all(c.sets["epochs"] == 1 for c in smoke)


def test_reproduce_table_missing_column_and_resume(targets_file, tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "out")
    result = reproduce(targets_file, out, CONFIG, data_root=str(tmp_path / "nodata"))
    md = result["markdown"]
    # column a ran (2 seeds -> mean ± std), the Frappe column is reported missing, not dropped
    assert "| DCN |" in md and " ± " in md
    assert "missing data" in md and "Frappe_x1/train.csv" in md
    assert ("DCN", "absent") in result["incomplete"]
    assert "## a (tiny)" in md and "RelaImp AUC vs LR" in md and "p vs LR" in md
    lines = open(os.path.join(out, "mini_runs.jsonl")).read().splitlines()
    assert len(lines) == 4
    # a second call finds every cell recorded and runs nothing
    reproduce(targets_file, out, CONFIG, data_root=str(tmp_path / "nodata"))
    assert len(open(os.path.join(out, "mini_runs.jsonl")).read().splitlines()) == 4
    assert os.path.isfile(os.path.join(out, "mini.csv"))
    verdicts = json.loads(open(os.path.join(out, "mini.verdicts.json")).read())
    dcn = next(c for c in verdicts["cells"] if (c["row"], c["column"]) == ("DCN", "a"))
    assert dcn["seeds"] == [1, 2] and dcn["verdict"] in ("underpowered", "not reproduced")
    assert f"| {dcn['verdict']}" in md  # the table shows the verdict the file holds


PAPER_TABLES = sorted(glob.glob(os.path.join(REPO, "results", "targets", "*.yaml")))
FULL_SMOKE = os.environ.get("CTRBENCH_FULL_SMOKE") == "1"  # make test-tables: train every cell


def training_cell(targets: dict) -> tuple[list[str], list[str]]:
    """The one cell ``make test`` trains per table: its first row on its first column (the paper's
    leading cell, at the table's own settings). ``make test-tables`` trains every cell."""
    return list(targets["datasets"])[:1], list(targets["rows"])[:1]


@pytest.mark.slow
@pytest.mark.parametrize("path", PAPER_TABLES, ids=[os.path.basename(p) for p in PAPER_TABLES])
def test_paper_table_smoke_is_complete(path, tmp_path, data_root):
    """One cell of the table trains for one epoch and the table comes out complete
    (CTRBENCH_FULL_SMOKE=1: every row of every column, as `make test-tables`)."""
    targets = load_targets(path)
    columns, models = (None, None) if FULL_SMOKE else training_cell(targets)
    result = reproduce(
        path,
        str(tmp_path),
        CONFIG,
        smoke=True,
        seeds=[2023],
        data_root=data_root,
        datasets=columns,
        models=models,
    )
    assert not result["incomplete"], result["status"]
    assert all(f"| {row} |" in result["markdown"] for row in (models or targets["rows"]))


@pytest.mark.slow
@pytest.mark.parametrize("path", PAPER_TABLES, ids=[os.path.basename(p) for p in PAPER_TABLES])
def test_paper_table_cells_build_and_step(path, data_root):
    """Every cell of every column (its own settings) resolves, builds its model and takes a training
    step on the fixture."""
    if FULL_SMOKE:
        pytest.skip("every cell is trained by the smoke test")
    n, errors = check(path, CONFIG, smoke=True, data_root=data_root)
    assert n and not errors, errors


def test_check_reports_a_broken_cell(targets_file, tmp_path, data_root):
    broken = yaml.safe_load(open(targets_file))
    broken["rows"]["DCN"]["set"] = {"a": {"dnn_hidden_units": "not-a-list"}}
    broken["rows"]["Nope"] = {"expid": "NoSuchExpid_tiny"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    n, errors = check(str(path), CONFIG, datasets=["a"], smoke=True, data_root=data_root)
    assert n == 3 and set(errors) == {("DCN", "a"), ("Nope", "a")}
    assert "NoSuchExpid_tiny" in errors[("Nope", "a")]


# ---- collect: a cell's values are seeds of one config -------------------------------------------------


def table_rec(row, column, seed, auc, test=True, time="t", **config):
    from benchmark.config import config_hash

    cfg = {"expid": f"{row}_x", "model": row, "dataset_id": column, "seed": seed, "table_name": "mini"}
    cfg.update(report_name=row, table_column=column, **config)
    out = {"time": time, "expid": cfg["expid"], "model": row, "report_name": row, "dataset_id": column}
    out.update(seed=seed, params=10, config=cfg, config_hash=config_hash(cfg))
    if test:
        out["test"] = {"AUC": auc, "logloss": 1 - auc}
    return out


COLLECT_CASES = {
    "two configs of one cell: the planned one": (
        [table_rec("DCN", "a", 1, 0.70, lr=1), table_rec("DCN", "a", 2, 0.80, lr=2)],
        {"lr": 1},
        [0.70],
    ),
    "two configs of one cell, no plan: the newest": (
        [table_rec("DCN", "a", 1, 0.70, lr=1), table_rec("DCN", "a", 2, 0.80, lr=2)],
        None,
        [0.80],
    ),
    "a re-run of a seed replaces it": (
        [table_rec("DCN", "a", 1, 0.70), table_rec("DCN", "a", 2, 0.72), table_rec("DCN", "a", 1, 0.71)],
        None,
        [0.71, 0.72],
    ),
    "a record without test metrics is no seed": (
        [table_rec("DCN", "a", 1, 0.70), table_rec("DCN", "a", 1, 0.0, test=False)],
        None,
        [0.70],
    ),
}


@pytest.mark.parametrize("records, planned, values", COLLECT_CASES.values(), ids=COLLECT_CASES.keys())
def test_collect_takes_the_seeds_of_one_config(records, planned, values):
    from benchmark.records import config_key
    from benchmark.reproduce import collect

    keys = None
    if planned is not None:
        keys = {("DCN", "a"): config_key(table_rec("DCN", "a", 9, 0.0, **planned))}
    notes = []
    cells = collect({"name": "mini", "metrics": ["logloss", "AUC"]}, records, keys, notes)
    assert sorted(cells[("DCN", "a")]["AUC"]) == pytest.approx(sorted(values))
    assert len(cells[("DCN", "a")]["seeds"]) == len(values)
    assert len(notes) == 1 if len(records) > len(values) else not notes


# ---- verdicts of cells from fixed records ------------------------------------------------------------

VERDICT_TARGETS = {
    "name": "mini",
    "metrics": ["logloss", "AUC"],
    "seeds": [1, 2, 3, 4, 5],
    "datasets": {"a": {"dataset_id": "d"}},
    "rows": {"DCN": {"expid": "DCN_x"}},
    "paper": {},
}

AUCS = [0.8012, 0.8031, 0.8024, 0.8019, 0.8027]  # mean 0.80226, std 0.00072
VERDICT_CASES = {
    # paper numbers (AUC as printed, %), our AUCs, logloss offset from the paper's -> verdict
    "five seeds on the paper's number": ({"AUC": 80.22, "logloss": 0.44}, AUCS, 0.0, "reproduced"),
    "five seeds far from the paper's AUC": ({"AUC": 81.00, "logloss": 0.44}, AUCS, 0.0, "not reproduced"),
    "logloss far off, AUC on the number": ({"AUC": 80.22, "logloss": 0.44}, AUCS, 0.01, "not reproduced"),
    "one seed, on the number": ({"AUC": 80.12, "logloss": 0.44}, AUCS[:1], 0.0, "underpowered"),
    "two seeds, wide apart": ({"AUC": 80.22, "logloss": 0.44}, [0.7990, 0.8050], 0.0, "underpowered"),
    "AUC printed as a fraction": ({"AUC": 0.8022, "logloss": 0.44}, AUCS, 0.0, "reproduced"),
}


@pytest.mark.parametrize("paper, aucs, loss_off, expected", VERDICT_CASES.values(), ids=VERDICT_CASES.keys())
def test_cell_verdicts_from_fixed_records(paper, aucs, loss_off, expected, tmp_path):
    from benchmark.reproduce import collect, render, render_csv, table_cells, verdicts_json

    targets = dict(VERDICT_TARGETS, paper={"DCN": {"a": paper}}, _path="mini.yaml")
    records = [
        dict(table_rec("DCN", "a", seed, auc), test={"AUC": auc, "logloss": 0.44 + loss_off + 1e-4 * seed})
        for seed, auc in enumerate(aucs, 1)
    ]
    entries = table_cells(targets, collect(targets, records), {}, notes=[])
    (entry,) = entries
    assert entry["verdict"]["verdict"] == expected
    md = render(targets, entries, {}, False, [])
    assert f"| {expected}" in md and f"Verdicts: {expected} 1" in md
    if expected == "underpowered":
        needed = entry["verdict"]["seeds_needed"]
        assert (needed is None) == (len(aucs) == 1)
        assert ("1 seed" in md) == (len(aucs) == 1)
        if needed:
            assert f"~{needed} would decide" in md and needed > len(aucs)
    saved = verdicts_json(targets, entries)["cells"][0]
    assert saved["verdict"] == expected and set(saved["metrics"]) == {"AUC", "logloss"}
    line = dict(zip(*[r.split(",") for r in render_csv(targets, entries).splitlines()]))
    assert line["verdict"] == expected and float(line["AUC_paper"]) == pytest.approx(_frac(paper["AUC"]))


def _frac(auc):
    return auc / 100 if auc > 1 else auc


def test_tolerance_defaults_and_keys(tmp_path):
    from benchmark.errors import CTRBenchError
    from benchmark.verdicts import DEFAULT_TOLERANCE, tolerances

    assert tolerances({}) == DEFAULT_TOLERANCE
    assert tolerances({"auc_tolerance": 0.2})["AUC"] == pytest.approx(0.002)
    assert tolerances({"auc_tolerance": 0.2, "tolerance": {"AUC": 0.0005}})["AUC"] == 0.0005
    for bad, match in (({"AUC": "small"}, "tolerance.AUC: 'small'"), ([0.1], r"tolerance: \[0.1\]")):
        path = tmp_path / "t.yaml"
        path.write_text(yaml.safe_dump(dict(TARGETS, tolerance=bad)))
        with pytest.raises(CTRBenchError, match=match):
            load_targets(str(path))


# ---- a cell that cannot be resolved stops the table before any cell runs ----------------------------

UNRESOLVED_CASES = {
    "an unknown expid": ({"Abad": {"expid": "NoSuchExpid_tiny"}}, "NoSuchExpid_tiny"),
    "an unknown model": (
        {"Abad": {"expid": "DCN_tiny", "set": {"all": {"model": "NoSuchModel"}}}},
        "NoSuchModel",
    ),
}


@pytest.mark.parametrize("bad_rows, named", UNRESOLVED_CASES.values(), ids=UNRESOLVED_CASES.keys())
def test_reproduce_with_an_unknown_cell_exits_2_before_running(bad_rows, named, tmp_path, data_root, capsys):
    import sys

    from benchmark import cli

    targets = dict(TARGETS, rows={**bad_rows, **TARGETS["rows"]})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(targets))
    argv, here = sys.argv, os.getcwd()
    sys.argv = ["ctrbench", "reproduce", str(path), "--config", CONFIG, "--data-root", data_root]
    sys.argv += ["--out-dir", str(tmp_path / "out"), "--datasets", "a"]
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main()
    finally:
        sys.argv = argv
        os.chdir(here)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert named in err and "Abad / a" in err and "no cell ran" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "out" / "mini_runs.jsonl")  # nothing ran
