"""The results board's numbers from fixed records: one row per config group, intervals, paired/Welch
tests with Holm's correction, best / tied marks, RelaImp, paper tables; and the folder it writes."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from scipy import stats as sps

from benchmark import board
from benchmark.board import data, site
from benchmark.config import load_config
from benchmark.errors import CTRBenchError
from benchmark.records import group_records

pytest.importorskip("plotly")
pytest.importorskip("jinja2")


def rec(expid, seed, auc, loss, dataset="ds", model=None, extra=None, **top):
    model = model or expid.split("_")[0]
    config = {"model": model, "dataset_id": dataset, "seed": seed, "batch_size": 256, **(extra or {})}
    history = [
        {"epoch": e, "step": 10 * e, "AUC": auc - 0.01 / e, "logloss": loss + 0.01 / e, "lr": 1e-3}
        for e in (1, 2, 3)
    ]
    record = {
        "expid": expid,
        "model": model,
        "dataset_id": dataset,
        "seed": seed,
        "valid": {"AUC": auc - 0.001, "logloss": loss + 0.001},
        "test": {"AUC": auc, "logloss": loss},
        "history": history,
        "params": 1000,
        "seconds_per_epoch": 2.0,
        "samples_per_second": 5000.0,
        "peak_memory_mb": 100.0,
        "device": "cpu",
        "config": config,
        "env": {"torch": "2.x", "git_commit": "abc1234"},
        "run_id": f"{expid}_s{seed}",
    }
    record.update(top)
    return record


# LR: the baseline; DNN: the same seeds (paired); DCN: other seeds (Welch); WIDE: one seed; DNN [bs]: a
# second config of DNN's expid; LR on a second dataset.
LR = {1: (0.7000, 0.50), 2: (0.7010, 0.49), 3: (0.6990, 0.51)}
DNN = {1: (0.7200, 0.47), 2: (0.7230, 0.455), 3: (0.7190, 0.482)}
DCN = {4: (0.7210, 0.465), 5: (0.7180, 0.475), 6: (0.7240, 0.46)}


def fixed_records():
    records = [rec("LR_x", s, *v) for s, v in LR.items()]
    records += [rec("DNN_x", s, *v) for s, v in DNN.items()]
    records += [rec("DCN_x", s, *v) for s, v in DCN.items()]
    records += [rec("WIDE_x", 1, 0.71, 0.49)]
    records += [rec("DNN_x", s, 0.70 + s / 1000, 0.5 - s / 1000, extra={"batch_size": 1024}) for s in (1, 2)]
    records += [rec("LR_x", s, 0.6 + s / 100, 0.6, dataset="other") for s in (1, 2)]
    # seed 1 of LR recorded twice: the newer record counts, the row keeps 3 seeds
    records.insert(0, rec("LR_x", 1, 0.5, 0.9))
    return records


def table(records=None, baseline="LR", dataset="ds"):
    tables = data.dataset_tables(records or fixed_records(), baseline)
    return next(t for t in tables if t.dataset_id == dataset)


def row(tab, label):
    return next(r for r in tab.rows if r.label == label)


def holm_by_hand(pvalues):
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out


def test_one_table_per_dataset_and_one_row_per_config_group():
    records = fixed_records()
    tables = data.dataset_tables(records, "LR")
    assert [t.dataset_id for t in tables] == ["ds", "other"]
    groups = group_records(records)
    for t in tables:
        expected = [g for g in groups if g.dataset_id == t.dataset_id]
        assert len(t.rows) == len(expected)
        assert sorted(r.config_key for r in t.rows) == sorted(g.config_key for g in expected)
    ds = tables[0]
    assert len(ds.rows) == 5  # LR, DCN, WIDE and DNN_x, whose two configs are two rows
    lr = row(ds, "LR")
    assert lr.seeds == [1, 2, 3] and lr.cells["AUC"].values[1] == pytest.approx(
        0.7
    )  # the newer seed-1 record
    assert any("seed 1 recorded again" in note for note in ds.notes)
    dnn_labels = sorted(r.label for r in ds.rows if r.expid == "DNN_x")
    assert dnn_labels == ["DNN_x [batch_size=1024]", "DNN_x [batch_size=256]"]


def test_intervals_are_scipy_t_intervals():
    lr = row(table(), "LR").cells["AUC"]
    values = [v for v, _ in LR.values()]
    lo, hi = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
    assert (lr.mean, lr.lo, lr.hi) == pytest.approx((np.mean(values), lo, hi))
    wide = row(table(), "WIDE").cells["AUC"]
    assert wide.n == 1 and wide.lo is None and wide.hi is None


def test_baseline_tests_paired_by_seed_else_welch_with_holm_over_the_table():
    tab = table()
    lr, dnn, dcn, wide = (row(tab, name) for name in ("LR", "DNN_x [batch_size=256]", "DCN", "WIDE"))
    base_auc = [LR[s][0] for s in (1, 2, 3)]
    paired = sps.ttest_rel([DNN[s][0] for s in (1, 2, 3)], base_auc).pvalue
    welch = sps.ttest_ind([v for v, _ in DCN.values()], base_auc, equal_var=False).pvalue
    assert dnn.cells["AUC"].test == "paired" and dnn.cells["AUC"].p == pytest.approx(paired)
    assert dcn.cells["AUC"].test == "welch" and dcn.cells["AUC"].p == pytest.approx(welch)
    assert wide.cells["AUC"].p is None and wide.cells["AUC"].p_adj is None  # one seed: not testable
    assert lr.is_baseline and lr.cells["AUC"].p is None and tab.baseline == "LR"
    family = [c for r in tab.rows for c in r.cells.values() if c.p is not None]
    assert len(family) == 6  # DNN (two configs) and DCN, AUC and logloss: one Holm family per table
    for cell, adjusted in zip(family, holm_by_hand([c.p for c in family])):
        assert cell.p_adj == pytest.approx(adjusted)
        assert cell.significant == (adjusted < 0.05)
    assert dnn.cells["AUC"].p_adj > dnn.cells["AUC"].p


def test_relaimp_against_the_baseline():
    tab = table()
    lr, dcn = row(tab, "LR"), row(tab, "DCN")
    auc, base = dcn.cells["AUC"].mean, lr.cells["AUC"].mean
    assert dcn.cells["AUC"].relaimp == pytest.approx(((auc - 0.5) / (base - 0.5) - 1) * 100)
    loss, base_loss = dcn.cells["logloss"].mean, lr.cells["logloss"].mean
    assert dcn.cells["logloss"].relaimp == pytest.approx((loss - base_loss) / base_loss * 100)
    assert lr.cells["AUC"].relaimp == pytest.approx(0.0)
    no_base = table(baseline=None)
    assert no_base.baseline is None and all(c.relaimp is None for r in no_base.rows for c in r.cells.values())
    missing = table(baseline="NOPE")
    assert missing.baseline is None and missing.baseline_missing == "NOPE"
    assert no_base.baseline_missing is None


def test_best_and_tied_marks():
    # A is best; B differs from A by noise only (tied); C is far below with tiny spread (not tied)
    records = [rec("A_x", s, 0.80 + d, 0.40 - d) for s, d in ((1, 0.002), (2, -0.001), (3, 0.0005))]
    records += [rec("B_x", s, 0.80 + d, 0.40 - d) for s, d in ((1, -0.002), (2, 0.002), (3, -0.0003))]
    records += [rec("C_x", s, 0.70 + d, 0.50 - d) for s, d in ((1, 0.0001), (2, -0.0001), (3, 0.0002))]
    records += [rec("D_x", 1, 0.79, 0.41)]  # one seed: never tied, never tested
    tab = table(records, baseline=None)
    marks = {r.label: (r.cells["AUC"].mark, r.cells["logloss"].mark) for r in tab.rows}
    assert marks == {"A": ("best", "best"), "B": ("tied", "tied"), "C": (None, None), "D": (None, None)}
    # the tests against the best are one Holm family too
    family = [r.cells[m] for r in tab.rows for m in ("logloss", "AUC") if r.cells[m].best_p_adj is not None]
    assert len(family) == 4
    raw = [
        sps.ttest_rel(
            [r.cells[m].values[s] for s in (1, 2, 3)], [row(tab, "A").cells[m].values[s] for s in (1, 2, 3)]
        ).pvalue
        for r in (row(tab, "B"), row(tab, "C"))
        for m in ("logloss", "AUC")
    ]
    adjusted = holm_by_hand(raw)
    got = [row(tab, n).cells[m].best_p_adj for n in ("B", "C") for m in ("logloss", "AUC")]
    assert got == pytest.approx(adjusted)


TARGETS = {
    "name": "paper_t1",
    "title": "Paper, Table 1",
    "metrics": ["logloss", "AUC"],
    "baseline": {"colA": "Base"},
    "datasets": {"colA": {"dataset_id": "ds"}, "colB": {"dataset_id": "ds2"}},
    "rows": {"Base": {"expid": "LR_x"}, "Ours": {"expid": "DNN_x"}},
    "paper": {"Base": {"colA": {"AUC": 70.0, "logloss": 0.5}}, "Ours": {"colA": {"AUC": 0.725}}},
}


def paper_records():
    out = []
    for name, expid, values in (("Ours", "DNN_x", DNN), ("Base", "LR_x", LR)):
        for seed, (auc, loss) in values.items():
            r = rec(expid, seed, auc, loss, report_name=name)
            r["config"].update(table_name="paper_t1", table_column="colA", report_name=name)
            out.append(r)
    return out + [rec("LR_x", 1, 0.6, 0.6)]  # not of the table


def test_paper_table_cells_beside_the_paper_numbers():
    verdicts = {("paper_t1", "Base", "colA", "AUC"): "reproduced", ("other", "Ours", "colA", "AUC"): "x"}
    tables = data.paper_tables(TARGETS, paper_records(), verdicts)
    assert [t.id for t in tables] == ["paper-paper_t1-colA"]  # colB has no records
    tab = tables[0]
    assert [r.paper_row for r in tab.rows] == ["Base", "Ours"]  # the targets file's order
    assert tab.baseline == "Base" and tab.metrics == ["logloss", "AUC"]
    base, ours = tab.rows
    auc = base.cells["AUC"]
    assert auc.paper == 70.0 and auc.diff == pytest.approx(np.mean([v for v, _ in LR.values()]) * 100 - 70.0)
    assert auc.verdict == "reproduced" and base.cells["logloss"].verdict is None
    assert ours.cells["AUC"].paper == pytest.approx(72.5)  # a fraction in the targets file, shown in %
    assert ours.cells["logloss"].paper is None and ours.cells["logloss"].diff is None
    assert ours.cells["AUC"].test == "paired"


# ---- the folder --------------------------------------------------------------------------------------


def write_records(path, records):
    with open(path, "w") as fd:
        for r in records:
            fd.write(json.dumps(r) + "\n")
    return str(path)


def test_site_is_self_contained_and_complete(tmp_path):
    results = write_records(tmp_path / "runs.jsonl", fixed_records())
    out = tmp_path / "board"
    written = board.build([results], str(out), baseline="LR", config_dir=str(tmp_path))
    index = (out / "index.html").read_text()
    assert written["tables"] == 2 and written["pages"] == 6
    assert (out / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    for name in ("board.js", "board.css"):
        assert (out / "assets" / name).is_file()
    pages = sorted(os.listdir(out / "configs"))
    assert len(pages) == 6
    for page in [index] + [(out / "configs" / p).read_text() for p in pages]:
        # no network: every script, stylesheet and image is a relative file of the folder
        for url in re.findall(r'(?:src|href)="([^"]*)"', page):
            assert not re.match(r"^(https?:)?//", url), url
    for href in re.findall(r'href="(configs/[^"#]+)"', index):
        assert (out / href).is_file()
    assert index.count("<tbody>") == 2 and index.count('<tr data-model="') == 6
    assert 'id="dataset-ds"' in index and 'href="#dataset-ds"' in index
    page = (out / "configs" / pages[0]).read_text()
    assert 'id="curves-' in page and "Plotly.newPlot" in page


def test_default_expid_difference(tmp_path):
    cfg = tmp_path / "config"
    (cfg / "dataset_config").mkdir(parents=True)
    (cfg / "model_config").mkdir()
    (cfg / "dataset_config" / "d.yaml").write_text(
        "dset:\n  data_root: ../data/\n  train_data: ../data/t.csv\n  valid_data: ../data/v.csv\n"
        "  test_data: ../data/t.csv\n  feature_cols: [{name: C1, active: True, dtype: str, type: categorical}]\n"
        "  label_col: {name: label, dtype: float}\n"
    )
    (cfg / "model_config" / "m.yaml").write_text(
        "LR_default:\n  model: LR\n  dataset_id: dset\n  learning_rate: 1.e-3\n"
        "LR_mine:\n  model: LR\n  dataset_id: dset\n  learning_rate: 1.e-2\n  batch_size: 64\n"
    )
    params = load_config(str(cfg), "LR_mine")
    records = [rec("LR_mine", s, 0.7 + s / 100, 0.5, model="LR", dataset="dset") for s in (1, 2)]
    for r in records:
        r["config"] = dict(params, seed=r["seed"])
    [tab] = data.dataset_tables(records)
    page = site.config_page(tab.rows[0], site.Defaults(str(tmp_path / "elsewhere")), "test")
    assert page.default_expid == "LR_default"
    assert page.default_diff == [
        ("batch_size", "64", str(load_config(str(cfg), "LR_default")["batch_size"])),
        ("learning_rate", "0.01", "0.001"),
    ]
    assert page.curves and page.spread and [s["seed"] for s in page.seeds] == [1, 2]


def test_rebuild_replaces_a_board_and_refuses_other_folders(tmp_path):
    results = write_records(tmp_path / "runs.jsonl", fixed_records())
    out = tmp_path / "board"
    board.build([results], str(out), config_dir=str(tmp_path))
    (out / "configs" / "stale.html").write_text("old")
    board.build([results], str(out), config_dir=str(tmp_path))
    assert not (out / "configs" / "stale.html").exists()
    assert not [p for p in os.listdir(tmp_path) if ".building-" in p or ".old-" in p]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(CTRBenchError, match="other files"):
        board.build([results], str(other), config_dir=str(tmp_path))
    assert (other / "notes.txt").read_text() == "keep"
    with pytest.raises(CTRBenchError, match="no such file"):
        board.build([str(tmp_path / "absent.jsonl")], str(out))
    with pytest.raises(CTRBenchError, match="no records of table"):
        targets = tmp_path / "t.yaml"
        targets.write_text(json.dumps({k: v for k, v in TARGETS.items()}))
        board.build([results], str(out), targets=[str(targets)], config_dir=str(tmp_path))


def test_tuning_best_so_far_from_a_study_storage(tmp_path):
    optuna = pytest.importorskip("optuna")
    from benchmark.board import tuning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (tmp_path / "tune").mkdir()
    db = tmp_path / "tune" / "s.db"
    study = optuna.create_study(study_name="LR_x-abc", storage=f"sqlite:///{db}", direction="minimize")
    study.set_user_attr("expid", "LR_x")
    values = [0.5, 0.7, None, 0.4, 0.45]  # None: a pruned trial

    def objective(trial):
        value = values[trial.number]
        trial.suggest_float("lr", 1e-4, 1e-2)
        if value is None:
            raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=len(values))
    assert tuning.find_storages([str(tmp_path / "runs.jsonl")]) == [str(db)]
    [loaded] = tuning.load_studies(str(db))
    assert loaded.name == "LR_x-abc" and loaded.expid == "LR_x" and not loaded.maximize
    assert len(loaded.finished) == 5 and len(loaded.complete) == 4
    assert loaded.best_so_far("number") == ([1, 2, 3, 4, 5], [0.5, 0.5, 0.5, 0.4, 0.4])
    seconds, best = loaded.best_so_far("seconds")
    assert best == [0.5, 0.5, 0.5, 0.4, 0.4] and seconds == sorted(seconds)
    assert loaded.best().value == 0.4
    with pytest.raises(CTRBenchError, match="no such file"):
        tuning.load_studies(str(tmp_path / "absent.db"))
    (tmp_path / "junk.db").write_text("not a database")
    with pytest.raises(CTRBenchError, match="not an Optuna study storage"):
        tuning.load_studies(str(tmp_path / "junk.db"))


def test_relaimp_not_defined_below_chance():
    records = [rec("LR_x", s, 0.45 + s / 1000, 0.7 + s / 100) for s in (1, 2)]
    records += [rec("DNN_x", s, 0.6 + s / 500, 0.6 - s / 1000) for s in (1, 2)]
    tab = table(records)
    dnn = row(tab, "DNN").cells["AUC"]
    assert dnn.relaimp is None and dnn.relaimp_na
    assert any("RelaImp AUC n/a" in note for note in tab.notes)
    assert row(tab, "DNN").cells["logloss"].relaimp == pytest.approx((0.5985 - 0.715) / 0.715 * 100)


def test_verdicts_of_reproduce_beside_the_records(tmp_path):
    from benchmark import reproduce

    # the verdicts file as reproduce writes it, from the same per-seed values
    cells = {
        (name, "colA"): {
            "AUC": [values[s][0] for s in (1, 2, 3)],
            "logloss": [values[s][1] for s in (1, 2, 3)],
            "seeds": [1, 2, 3],
            "params": 1000,
        }
        for name, values in (("Base", LR), ("Ours", DNN))
    }
    targets = dict(TARGETS, _path="paper_t1.yaml")
    doc = reproduce.verdicts_json(targets, reproduce.table_cells(targets, cells, {}, ["colA"]))
    (tmp_path / "paper_t1.verdicts.json").write_text(json.dumps(doc))
    verdicts = board.read_verdicts(str(tmp_path / "paper_t1.verdicts.json"))
    expected = {
        (c["row"], m): reproduce.verdict_text({**v, "metrics": {m: v}})
        for c in doc["cells"]
        for m, v in c["metrics"].items()
    }
    assert {(k[1], k[3]): v for k, v in verdicts.items()} == expected
    assert {k[0] for k in verdicts} == {"paper_t1"} and ("Base", "AUC") in expected

    results = write_records(tmp_path / "paper_t1_runs.jsonl", paper_records())
    (tmp_path / "t.yaml").write_text(json.dumps(TARGETS))
    board.build(
        [results], str(tmp_path / "site"), targets=[str(tmp_path / "t.yaml")], config_dir=str(tmp_path)
    )
    index = (tmp_path / "site" / "index.html").read_text()
    assert expected[("Base", "AUC")] in index

    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(CTRBenchError, match="not a verdicts file"):
        board.read_verdicts(str(tmp_path / "bad.json"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--results", "{tmp}/absent.jsonl"], "--results {tmp}/absent.jsonl: no such file"),
        (["--results", "{tmp}/runs.jsonl", "--out", "{tmp}/mine"], "is a folder with other files"),
        (["--results", "{tmp}/runs.jsonl", "--alpha", "1.5"], "--alpha 1.5"),
        (["--results", "{tmp}/runs.jsonl", "--tune-storage", "{tmp}/no.db"], "--tune-storage {tmp}/no.db"),
    ],
)
def test_cli_bad_input_is_one_error_line(tmp_path, monkeypatch, capsys, args, message):
    from benchmark import cli

    write_records(tmp_path / "runs.jsonl", fixed_records())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["ctrbench", "board", *[a.format(tmp=tmp_path) for a in args]])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.format(tmp=tmp_path) in lines[0]
    assert (tmp_path / "mine" / "keep.txt").read_text() == "keep"
