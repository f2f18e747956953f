"""CLI behaviour: one-line errors with exit code 2, records appended, report printed."""

import json
import os
import subprocess
import sys

from tests.conftest import CONFIG, REPO


def ctrbench(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_unknown_expid_is_one_line_exit_2():
    res = ctrbench("run", "--expid", "DCN_tinyy")
    assert res.returncode == 2
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "did you mean 'DCN_tiny'" in lines[0] and "Traceback" not in res.stderr


def test_unknown_model_lists_registered(tmp_path):
    cfg = tmp_path / "cfg"
    (cfg / "model_config").mkdir(parents=True)
    (cfg / "model_config" / "m.yaml").write_text("E: {model: NoSuchNet, dataset_id: tiny}\n")
    (cfg / "dataset_config").mkdir()
    src = open(os.path.join(CONFIG, "dataset_config", "synthetic.yaml")).read()
    (cfg / "dataset_config" / "d.yaml").write_text(src)
    res = ctrbench(
        "run",
        "--expid",
        "E",
        "--config",
        str(cfg),
        "--data-root",
        str(tmp_path / "data"),
        "--results",
        str(tmp_path / "r.jsonl"),
    )
    assert res.returncode == 2, res.stderr
    assert "unknown model 'NoSuchNet'" in res.stderr and "DCN" in res.stderr
    assert "Traceback" not in res.stderr
    res = ctrbench(
        "run", "--expid", "E", "--config", str(cfg), "--data-root", str(tmp_path / "data"), "--debug"
    )
    assert "Traceback" in res.stderr


def test_run_appends_record_and_report_prints_relaimp(tmp_path):
    results = str(tmp_path / "runs.jsonl")
    for expid in ("LR_tiny", "DCN_tiny"):
        res = ctrbench(
            "run",
            "--expid",
            expid,
            "--data-root",
            str(tmp_path / "data"),
            "--results",
            results,
            "--set",
            f"model_root={tmp_path}/ck",
        )
        assert res.returncode == 0, res.stderr
        assert f"{expid} test: logloss=" in res.stdout
    records = [json.loads(l) for l in open(results)]
    assert [r["expid"] for r in records] == ["LR_tiny", "DCN_tiny"]
    for key in (
        "valid",
        "test",
        "best_epoch",
        "params",
        "train_seconds",
        "samples_per_second",
        "peak_memory_mb",
        "config_hash",
        "run_id",
        "config",
        "env",
        "device",
        "seed",
    ):
        assert key in records[0]
    assert records[0]["env"]["fuxictr"] == "2.3.10"
    res = ctrbench("report", "--results", results, "--baseline", "LR")
    assert res.returncode == 0, res.stderr
    assert "RelaImp AUC" in res.stdout and "| DCN |" in res.stdout and "+0.00%" in res.stdout


def test_models_lists_core_models():
    res = ctrbench("models")
    assert res.returncode == 0
    for name in ("LR", "FM", "DNN", "DCN"):
        assert name in res.stdout
