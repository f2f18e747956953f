import math

import pytest

from benchmark.errors import CTRBenchError
from benchmark.report import build_table, relaimp_auc, relaimp_loss, render, significance, significance_test
from benchmark.report import rows as _rows


def test_relaimp_on_ibnet_table4():
    # Avazu: IBNet AUC 79.4526 vs MaskNet 79.3969 -> +0.19%
    assert round(relaimp_auc(79.4526, 79.3969), 2) == 0.19
    assert round(relaimp_auc(0.794526, 0.793969), 2) == 0.19
    # Frappe: IBNet Logloss 0.139537 vs FinalMLP 0.146706 -> -4.88%
    assert (
        round(relaimp_loss(0.139537, 0.146706), 2) == -4.89
        or round(relaimp_loss(0.139537, 0.146706), 2) == -4.88
    )
    assert f"{relaimp_loss(0.139537, 0.146706):.2f}" in ("-4.89", "-4.88")


def rec(model, ds, seed, auc, loss, params=100):
    return {
        "report_name": model,
        "model": model,
        "dataset_id": ds,
        "seed": seed,
        "params": params,
        "test": {"AUC": auc, "logloss": loss},
    }


def test_table_mean_std_and_relaimp():
    records = [
        rec("LR", "a", 1, 0.70, 0.50),
        rec("LR", "a", 2, 0.72, 0.48),
        rec("DCN", "a", 1, 0.80, 0.40),
        rec("DCN", "a", 2, 0.82, 0.42),
        rec("DCN", "b", 1, 0.90, 0.30),
    ]
    table = build_table(records, baseline="LR")
    cell = table["cells"][("DCN", "a")]
    assert cell["AUC"] == pytest.approx(0.81) and cell["AUC_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert cell["relaimp_auc"] == pytest.approx(((0.81 - 0.5) / (0.71 - 0.5) - 1) * 100)
    assert cell["relaimp_loss"] == pytest.approx((0.41 - 0.49) / 0.49 * 100)
    assert "relaimp_auc" not in table["cells"][("DCN", "b")]  # no LR record on b
    md = render(table, "md")
    assert "| DCN | 0.410000 ± 0.014142 | 81.0000 ± 1.4142 |" in md
    assert render(table, "csv").splitlines()[0].startswith("model,expid,dataset_id,n,seeds,logloss")
    assert r"\pm" in render(table, "latex")


def test_empty_and_bad_baseline():
    with pytest.raises(CTRBenchError):
        build_table([])
    with pytest.raises(CTRBenchError, match="--baseline X"):
        build_table([rec("LR", "a", 1, 0.7, 0.5)], baseline="X")


# ---- statistics: t-tests, best marks, efficiency columns --------------------------------------------


def test_paired_t_matches_the_closed_form_and_pairs_by_seed():
    from scipy import stats

    a, b = [0.801, 0.812, 0.805, 0.809], [0.798, 0.806, 0.804, 0.801]
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    t = mean / (sd / 2)
    res = significance_test(a, b, "paired")
    assert res["test"] == "paired" and res["t"] == pytest.approx(t)
    assert res["p"] == pytest.approx(2 * stats.t.sf(abs(t), 3))
    # same seeds in another order: paired by seed, not by position
    shuffled = significance_test(a, b[::-1], "paired", seeds=[1, 2, 3, 4], baseline_seeds=[4, 3, 2, 1])
    assert shuffled["t"] == pytest.approx(t)
    # auto: paired on the same seed set, Welch otherwise
    assert (
        significance_test(a, b, "auto", seeds=[1, 2, 3, 4], baseline_seeds=[4, 3, 2, 1])["test"] == "paired"
    )
    assert significance_test(a, b, "auto", seeds=[1, 2, 3, 4], baseline_seeds=[5, 6, 7, 8])["test"] == "welch"
    assert significance(a, b) == pytest.approx(res["p"])  # the old API still works
    assert significance([0.8], [0.7]) is None


def test_welch_levene_is_one_tailed_student_or_welch_by_levene():
    from scipy import stats

    a, b = [0.810, 0.812, 0.811, 0.813, 0.809], [0.806, 0.808, 0.807, 0.809, 0.805]  # equal spread
    res = significance_test(a, b, "welch_levene")
    assert res["test"] == "student" and res["levene_p"] >= 0.05
    two = stats.ttest_ind(a, b)  # Student, two-sided
    assert res["t"] == pytest.approx(two.statistic) and res["p"] == pytest.approx(two.pvalue / 2)
    wide = [0.790, 0.830, 0.770, 0.850, 0.815]  # far larger spread
    res = significance_test(wide, b, "welch_levene")
    assert res["levene_p"] < 0.05 and res["test"] == "welch"
    welch = stats.ttest_ind(wide, b, equal_var=False, alternative="greater")
    assert res["p"] == pytest.approx(welch.pvalue)
    # one-tailed towards "better": a worse model is not significant
    assert significance_test(b, a, "welch_levene")["p"] > 0.5
    with pytest.raises(CTRBenchError, match="choose one of"):
        significance_test(a, b, "bootstrap")


def test_table_marks_significance_best_and_second_and_efficiency():
    records = []
    for seed, (base, good, mid) in enumerate(
        [(0.700, 0.800, 0.750), (0.702, 0.803, 0.748), (0.701, 0.801, 0.752)], start=1
    ):
        records += [
            dict(
                rec("LR", "a", seed, base, 0.50),
                seconds_per_epoch=1.5,
                samples_per_second=1000,
                infer_ms_per_100=0.25,
                peak_memory_mb=300,
            ),
            dict(
                rec("DCN", "a", seed, good, 0.40),
                seconds_per_epoch=3.0,
                samples_per_second=500,
                infer_ms_per_100=0.5,
                peak_memory_mb=400,
            ),
            rec("DNN", "a", seed, mid, 0.45 + 0.01 * seed),
        ]
    table = build_table(records, baseline="LR", significance="paired", mark_best=True, efficiency=True)
    dcn, dnn = table["cells"][("DCN", "a")], table["cells"][("DNN", "a")]
    assert dcn["AUC_sig"] and dcn["AUC_test"] == "paired" and dcn["AUC_mark"] == "best"
    assert dnn["AUC_mark"] == "second" and "AUC_mark" not in table["cells"][("LR", "a")]
    assert dcn["logloss_mark"] == "best" and dnn["logloss_mark"] == "second"
    assert "AUC_p" not in table["cells"][("LR", "a")]  # no test of the baseline on itself
    md = render(table, "md")
    assert "**80.1333 ± 0.1528**\\*" in md and "<u>75.0000 ± 0.2000</u>" in md
    assert "a p(AUC)" in md and "a s/epoch" in md and "| 3.00 |" in md and "| 0.500 |" in md
    latex = render(table, "latex")
    assert r"\textbf{80.1333 $\pm$ 0.1528}$^{*}$" in latex and r"\underline{" in latex
    header = render(table, "csv").splitlines()[0]
    assert "AUC_p" in header and "peak_memory_mb" in header
    plain = build_table(records, baseline="LR")  # defaults: no extras
    assert "**" not in render(plain, "md") and "p(AUC)" not in render(plain, "md")


def test_a_rerun_of_the_same_seed_replaces_the_earlier_record():
    from benchmark.report import aggregate, build_table

    def rec(model, seed, auc):
        return {
            "model": model,
            "dataset_id": "d",
            "seed": seed,
            "params": 10,
            "test": {"AUC": auc, "logloss": 1 - auc},
        }

    records = [rec("LR", 1, 0.60), rec("DNN", 1, 0.70), rec("LR", 1, 0.61), rec("DNN", 1, 0.72)]
    cells = aggregate(records)
    assert cells[("LR", "d")]["AUC"] == [0.61] and cells[("DNN", "d")]["seeds"] == [1]
    table = build_table(records, baseline="LR")
    # one seed a side: no t-test, so no significance marker and no ± over duplicated values
    from benchmark.report import render

    md = render(table)
    assert "\\*" not in md and "±" not in md and "| DNN | 0.280000 | 72.0000 |" in md


def test_write_table_never_replaces_records(tmp_path):
    import json
    import os

    from benchmark.records import append_record
    from benchmark.report import write_table

    results = tmp_path / "runs.jsonl"
    append_record(str(results), rec("LR", "a", 1, 0.7, 0.5))
    before = results.read_bytes()
    with pytest.raises(CTRBenchError, match="is the run records file given as --results"):
        write_table(str(results), "| table |\n", str(results))
    link = tmp_path / "same.jsonl"
    os.symlink(results, link)
    with pytest.raises(CTRBenchError, match="run records file"):
        write_table(str(link), "| table |\n", str(results))
    ledger = tmp_path / "ledger.jsonl"  # any other file of JSON records
    ledger.write_text(json.dumps({"run": "x", "status": "done"}) + "\n")
    with pytest.raises(CTRBenchError, match="holds JSON records"):
        write_table(str(ledger), "| table |\n", str(results))
    assert results.read_bytes() == before and "done" in ledger.read_text()
    out = tmp_path / "tables" / "t.md"
    write_table(str(out), "| table |\n", str(results))
    write_table(str(out), "| table 2 |\n", str(results))  # an earlier table may be replaced
    assert out.read_text() == "| table 2 |\n" and os.listdir(out.parent) == ["t.md"]


# ---- rows are configs: what was run, never pooled ----------------------------------------------------


def run_rec(expid, seed, auc, model="DCN", test=True, time="t", **config):
    """A record as the runner writes it (its resolved config inside)."""
    from benchmark.config import config_hash

    cfg = {"expid": expid, "model": model, "dataset_id": "d", "seed": seed, "batch_size": 1024, **config}
    out = {"time": time, "expid": expid, "model": model, "report_name": model, "dataset_id": "d"}
    out.update(seed=seed, params=100, config=cfg, config_hash=config_hash(cfg))
    if test:
        out["test"] = {"AUC": auc, "logloss": 1 - auc}
    return out


GROUPING_CASES = {
    "two configs of one model": (
        [run_rec("DCN_a", 1, 0.70), run_rec("DCN_b", 1, 0.80, net_dropout=0.2)],
        {},
        {"DCN_a": [0.70], "DCN_b": [0.80]},
    ),
    "an expid_tuned beside its expid": (
        [run_rec("DCN_tiny", 1, 0.70), run_rec("DCN_tiny", 2, 0.72), run_rec("DCN_tiny_tuned", 1, 0.90)],
        {},
        {"DCN_tiny": [0.70, 0.72], "DCN_tiny_tuned": [0.90]},
    ),
    "a --set run beside a plain one": (
        [run_rec("DCN_tiny", 1, 0.70), run_rec("DCN_tiny", 2, 0.80, batch_size=256)],
        {},
        {"DCN_tiny [batch_size=1024]": [0.70], "DCN_tiny [batch_size=256]": [0.80]},
    ),
    "a record without test metrics": (
        [run_rec("DCN_tiny", 1, 0.70), run_rec("DCN_tiny", 2, 0.0, test=False)],
        {},
        {"DCN": [0.70]},
    ),
    "a record without test metrics hides no seed": (
        [run_rec("DCN_tiny", 1, 0.70), run_rec("DCN_tiny", 1, 0.0, test=False)],
        {},
        {"DCN": [0.70]},
    ),
    "--latest keeps the newest config of an expid": (
        [run_rec("DCN_tiny", 1, 0.70), run_rec("DCN_tiny", 2, 0.80, batch_size=256)],
        {"latest": True},
        {"DCN": [0.80]},
    ),
}


@pytest.mark.parametrize("records, options, rows", GROUPING_CASES.values(), ids=GROUPING_CASES.keys())
def test_report_rows_are_configs(records, options, rows):
    table = build_table(records, **options)
    got = {m: table["cells"][(m, "d")]["AUC_values"] for m in table["models"]}
    assert got == pytest.approx(rows)
    assert all(table["cells"][(m, "d")]["n"] == len(v) for m, v in rows.items())


def test_report_says_what_it_left_out():
    records = [
        run_rec("DCN_tiny", 1, 0.70, time="t1"),
        run_rec("DCN_tiny", 2, 0.80, time="t2", batch_size=256),
        run_rec("DCN_tiny", 2, 0.81, time="t3", batch_size=256),
        run_rec("DCN_tiny", 3, 0.0, test=False),
    ]
    md = render(build_table(records, latest=True))
    assert "Left out of the table:" in md
    assert (
        "DCN_tiny [batch_size=1024] on d (1 seed(s)): an older config of DCN_tiny, left out by --latest" in md
    )
    assert "seed 3" in md and "no test metrics" in md
    assert "seed 2 recorded again; the newer record (t3)" in md


def test_baseline_by_name_when_it_names_several_configs():
    records = [run_rec("LR_tiny", 1, 0.60, model="LR"), run_rec("DCN_tiny", 1, 0.70)]
    assert build_table(records, baseline="LR")["baseline"] == "LR"
    assert build_table(records, baseline="LR_tiny")["baseline"] == "LR"  # the expid names the row too
    records.append(run_rec("LR_tiny", 1, 0.62, model="LR", batch_size=256))
    with pytest.raises(CTRBenchError, match=r"--baseline LR names 2 configs: LR_tiny \[batch_size=1024\]"):
        build_table(records, baseline="LR")
    assert build_table(records, baseline="LR", latest=True)["baseline"] == "LR"


# ---- RelaImp only where it is defined ----------------------------------------------------------------

RELAIMP_CASES = {
    # baseline (AUC, logloss), model (AUC, logloss) -> expected RelaImp AUC / Loss cells
    "baseline AUC 0.45": ((0.45, 0.60), (0.60, 0.50), "n/a", "-16.67%"),
    "baseline AUC 0.5": ((0.50, 0.60), (0.60, 0.50), "n/a", "-16.67%"),
    "baseline AUC 0.55": ((0.55, 0.60), (0.60, 0.50), "+100.00%", "-16.67%"),
    "baseline logloss 0": ((0.70, 0.0), (0.60, 0.50), "-50.00%", "n/a"),
}


@pytest.mark.parametrize("base, model, auc_cell, loss_cell", RELAIMP_CASES.values(), ids=RELAIMP_CASES.keys())
def test_relaimp_is_na_where_undefined(base, model, auc_cell, loss_cell):
    table = build_table([rec("LR", "a", 1, *base), rec("DCN", "a", 1, *model)], baseline="LR")
    header, body = _rows(table)
    dcn = dict(zip(header, body[1]))
    assert (dcn["a RelaImp AUC"], dcn["a RelaImp Loss"]) == (auc_cell, loss_cell)
    md = render(table)
    assert ("AUC is at or below 0.5" in md) == (auc_cell == "n/a")
    assert ("Logloss is 0" in md) == (loss_cell == "n/a")
    assert relaimp_auc(model[0], base[0]) is None if auc_cell == "n/a" else True


# ---- exports a user can paste --------------------------------------------------------------------------


def test_csv_holds_numbers():
    import csv
    import io

    records = [rec("LR", "a", 1, 0.70, 0.50, params=1234), rec("LR", "a", 2, 0.72, 0.48, params=1234)]
    records += [
        rec("DCN", "a", 1, 0.80, 0.40, params=2_500_000),
        rec("DCN", "a", 2, 0.82, 0.42, params=2_500_000),
    ]
    table = build_table(records, baseline="LR", significance="paired")
    lines = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    dcn = next(line for line in lines if line["model"] == "DCN")
    assert dcn["params"] == "2500000" and dcn["seeds"] == "1 2" and dcn["n"] == "2"
    assert float(dcn["AUC"]) == pytest.approx(0.81) and float(dcn["AUC_std"]) == pytest.approx(
        0.0141421, rel=1e-4
    )
    assert float(dcn["relaimp_auc"]) == pytest.approx(((0.81 - 0.5) / (0.71 - 0.5) - 1) * 100)
    assert float(dcn["AUC_p"]) == pytest.approx(table["cells"][("DCN", "a")]["AUC_p"])
    for line in lines:  # every value is a number, empty, or a name
        for key, value in line.items():
            if key not in ("model", "expid", "dataset_id", "seeds", "baseline") and value:
                float(value)


LATEX_CASES = {
    "underscore": ("DCN_tiny", r"DCN\_tiny"),
    "hash": ("model #2", r"model \#2"),
    "percent": ("top 5%", r"top 5\%"),
    "ampersand": ("Wide&Deep", r"Wide\&Deep"),
    "dollar and braces": ("a$b{c}", r"a\$b\{c\}"),
    "tilde and caret": ("x~y^z", r"x\textasciitilde{}y\textasciicircum{}z"),
    "backslash": ("a\\b", r"a\textbackslash{}b"),
}


@pytest.mark.parametrize("name, escaped", LATEX_CASES.values(), ids=LATEX_CASES.keys())
def test_latex_escapes_every_special_character(name, escaped):
    latex = render(build_table([rec(name, "data_set#1", 1, 0.7, 0.5)]), "latex")
    assert f"\n{escaped} & " in latex
    assert r"data\_set\#1 AUC(\%)" in latex and r"data\_set\#1 \#Params" in latex


def test_latex_table_compiles(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    records = [rec(name, "data_set#1", 1, 0.7, 0.5) for name, _ in LATEX_CASES.values()]
    records += [rec("DCN_x", "data_set#1", s, 0.8 + s / 100, 0.4) for s in (1, 2)]
    table = build_table(records, baseline="DCN_x", mark_best=True)
    doc = tmp_path / "t.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        "\\begin{document}\n\\resizebox{\\textwidth}{!}{%\n" + render(table, "latex") + "}\n\\end{document}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0


# ---- a verdict per cell against a targets file -------------------------------------------------------


def test_report_targets_gives_verdicts_and_writes_them_beside_the_table(tmp_path):
    import json

    from benchmark.report import write_table, write_verdicts

    targets = {
        "name": "mini",
        "_path": "mini.yaml",
        "metrics": ["logloss", "AUC"],
        "datasets": {"col": {"dataset_id": "a"}},
        "rows": {"DCN": {"expid": "DCN_x"}, "LR": {"expid": "LR_x"}},
        "paper": {
            "DCN": {"col": {"AUC": 80.226, "logloss": 0.44}},
            "LR": {"col": {"AUC": 75.0, "logloss": 0.5}},
        },
    }
    aucs = [0.8012, 0.8031, 0.8024, 0.8019, 0.8027]
    records = [rec("DCN", "a", s, auc, 0.44 + s * 1e-4) for s, auc in enumerate(aucs, 1)]
    records += [rec("LR", "a", s, 0.70 + s * 1e-4, 0.5) for s in (1, 2, 3)]
    records += [rec("FM", "a", 1, 0.7, 0.5)]  # no paper number: no verdict
    table = build_table(records, targets=targets)
    cells = table["cells"]
    assert cells[("DCN", "a")]["verdict"]["verdict"] == "reproduced"
    assert cells[("LR", "a")]["verdict"]["verdict"] == "not reproduced"
    assert "verdict" not in cells[("FM", "a")]
    md = render(table)
    assert "a verdict" in md and "| reproduced |" in md and "| not reproduced |" in md
    out = tmp_path / "t4.md"
    write_table(str(out), md)
    path = write_verdicts(str(out), table)
    saved = json.loads(open(path).read())
    assert path == str(tmp_path / "t4.verdicts.json") and saved["tolerance"]["AUC"] == 0.001
    assert {(c["model"], c["verdict"]) for c in saved["cells"]} == {
        ("DCN", "reproduced"),
        ("LR", "not reproduced"),
    }
    assert "verdict" in render(table, "csv").splitlines()[0]


def _ctrbench(args, cwd, capsys):
    import os
    import sys

    from benchmark import cli

    argv, here = sys.argv, os.getcwd()
    sys.argv = ["ctrbench", *args]
    os.chdir(cwd)
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
        os.chdir(here)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_cli_latest_and_targets(tmp_path, capsys):
    import json

    import yaml

    from benchmark.records import append_record

    results = tmp_path / "runs.jsonl"
    older = [run_rec("DCN_tiny", 1, 0.70, batch_size=256)]  # an older config of the expid
    for r in older + [run_rec("DCN_tiny", s, 0.80 + s * 1e-4) for s in (1, 2, 3)]:
        append_record(str(results), r)
    targets = tmp_path / "t.yaml"
    targets.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "datasets": {"col": {"dataset_id": "d"}},
                "rows": {"DCN": {"expid": "DCN_tiny"}},
                "paper": {"DCN": {"col": {"AUC": 80.02, "logloss": 0.1998}}},
            }
        )
    )
    code, out, err = _ctrbench(["report", "--results", str(results)], tmp_path, capsys)
    assert code in (0, None) and "DCN_tiny [batch_size=1024]" in out and "DCN_tiny [batch_size=256]" in out
    args = ["report", "--results", str(results), "--latest", "--targets", str(targets), "--out", "t4.md"]
    code, out, err = _ctrbench(args, tmp_path, capsys)
    assert code in (0, None), err
    assert "| DCN |" in out and "left out by --latest" in out and "d verdict" in out
    saved = json.loads((tmp_path / "t4.verdicts.json").read_text())
    assert saved["cells"][0]["model"] == "DCN" and saved["cells"][0]["seeds"] == [1, 2, 3]
    assert "t4.verdicts.json" in err


def test_plot_bars_are_configs_like_report_rows(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.plotting import plot_metric_bars

    plt.close("all")
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)  # keep the figure to read its bars
    records = [
        run_rec("DCN_tiny", 1, 0.70),
        run_rec("DCN_tiny", 2, 0.72),
        run_rec("DCN_tiny", 1, 0.90, batch_size=256),
    ]
    records.append(run_rec("DCN_tiny", 3, 0.0, test=False))
    plot_metric_bars(records, str(tmp_path), "AUC")
    (ax,) = [a for a in plt.gcf().axes if a.get_title() == "d"]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["DCN_tiny [batch_size=1024]\n(n=2)", "DCN_tiny [batch_size=256]\n(n=1)"]
    monkeypatch.undo()
    plt.close("all")
