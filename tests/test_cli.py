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


def test_version():
    from importlib.metadata import version

    res = ctrbench("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"ctrbench {version('ctrbench')}", res


def test_sweep_on_gpus_torch_does_not_see_is_one_line_before_any_run(tmp_path, capsys):
    import torch

    from tests.test_bad_input_runs import ctrbench as in_process

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for gpus in ("0", "0,1", str(visible + 3)):
        if visible > max(int(g) for g in gpus.split(",")):
            continue
        args = ["sweep", "--expids", "DCN_tiny", "--gpus", gpus, "--results", str(tmp_path / "r.jsonl")]
        code, _, err = in_process(args + ["--data-root", str(tmp_path / "data")], capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --gpus"), err
        assert "sees no GPU" in lines[0] if not visible else "CUDA device(s) are visible" in lines[0]
        assert not (tmp_path / "data").exists() and not (tmp_path / "r.jsonl").exists()


def test_data_build_logs_each_line_once(tmp_path):
    res = ctrbench(
        "data", "build", "tiny", "--data-root", str(tmp_path / "data"), "--build-root", str(tmp_path / "b")
    )
    assert res.returncode == 0, res.stderr
    lines = [" ".join(line.split()) for line in res.stderr.splitlines() if "Built " in line]
    assert len(lines) == 1, res.stderr


def test_plot_every_validation_metric_of_a_real_run(tmp_path, capsys):
    """The history keeps every metric of ``metrics`` (logloss and AUC), not only the monitored one."""
    from tests.test_bad_input_runs import ctrbench as in_process

    results = str(tmp_path / "runs.jsonl")
    args = ["run", "--expid", "DCN_tiny", "--data-root", str(tmp_path / "data"), "--results", results]
    code, _, err = in_process(args + ["--set", f"model_root={tmp_path}/ck", "--set", "epochs=2"], capsys)
    assert code == 0, err
    (record,) = [json.loads(line) for line in open(results)]
    assert all({"logloss", "AUC"} <= set(h) for h in record["history"]), record["history"]
    for metric in ("logloss", "AUC"):
        code, _, err = in_process(
            ["plot", "--results", results, "--out", str(tmp_path / "plots"), "--metric", metric], capsys
        )
        assert code == 0, err
        assert (tmp_path / "plots" / f"curves_tiny_{metric}.png").is_file()
