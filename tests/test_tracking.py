"""Tracking: TensorBoard event files read back with tensorboard's own reader, records unchanged by tracking,
MLflow when it is installed, and the one-line error when a tracking extra is missing."""

import glob
import importlib.util
import json
import os
import sys

import pytest

from tests.conftest import CONFIG


def _tb_dirs(root):
    return sorted(glob.glob(os.path.join(str(root), "*")))


def test_tensorboard_event_files_hold_the_curves_and_the_hparams(load, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from benchmark.runner import RunOptions, run

    plain = run(
        load("DNN_tiny", "epochs=2", f"model_root={tmp_path}/a"),
        RunOptions(results=str(tmp_path / "a.jsonl"), quiet=True),
    ).record
    params = load("DNN_tiny", "epochs=2", "log_steps=2", f"model_root={tmp_path}/b")
    options = RunOptions(results=str(tmp_path / "b.jsonl"), quiet=True, tensorboard=str(tmp_path / "tb"))
    tracked = run(params, options).record
    # tracking changes neither the metrics nor the record's identity
    assert tracked["config_hash"] != plain["config_hash"]  # log_steps is a setting of the run
    (run_dir,) = _tb_dirs(tmp_path / "tb")
    assert os.path.basename(run_dir).startswith(f"{tracked['run_id']}_seed2023_")
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "train/loss",
        "train/lr",
        "train/samples_per_second",
        "valid/AUC",
        "valid/logloss",
        "valid/epoch",
        "test/AUC",
        "test/logloss",
    } <= tags
    steps_per_epoch = 7  # 1600 rows / batch 256
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(2, 2 * steps_per_epoch + 1, 2))
    assert [e.step for e in acc.Scalars("valid/AUC")] == [steps_per_epoch, 2 * steps_per_epoch]
    assert [round(e.value, 6) for e in acc.Scalars("valid/AUC")] == [
        round(h["AUC"], 6) for h in tracked["history"]
    ]
    assert acc.Scalars("test/AUC")[-1].value == pytest.approx(tracked["test"]["AUC"], rel=1e-6)
    # the hparams summary (resolved config + final metrics) sits in the same folder
    hp = EventAccumulator(run_dir)
    hp.Reload()
    assert "_hparams_/session_start_info" in hp.summary_metadata
    assert "hparam/test_AUC" in set(hp.Tags()["scalars"])


def test_tensorboard_leaves_the_record_as_it_was(load, tmp_path):
    pytest.importorskip("tensorboard")
    from benchmark.runner import RunOptions, run

    a = run(load("LR_tiny", f"model_root={tmp_path}/a"), RunOptions(quiet=True)).record
    params = load("LR_tiny", f"model_root={tmp_path}/b")
    b = run(params, RunOptions(quiet=True, tensorboard=str(tmp_path / "tb"))).record
    assert a["config_hash"] == b["config_hash"] and a["run_id"] == b["run_id"]
    assert a["valid"] == b["valid"] and a["test"] == b["test"] and a["history"] == b["history"]
    assert a["config"] == b["config"]


MLFLOW_URIS = [
    # (id, the --mlflow value ({tmp}: the test's folder; the run's working directory), the store it lands in)
    ("file-relative", "file:./mlruns", "sqlite:///{tmp}/mlruns/mlflow.db"),
    ("file-absolute", "file://{tmp}/store", "sqlite:///{tmp}/store/mlflow.db"),
    ("plain-folder", "runs_here", "sqlite:///{tmp}/runs_here/mlflow.db"),
    ("sqlite", "sqlite:///{tmp}/own.db", "sqlite:///{tmp}/own.db"),
]


@pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None, reason="mlflow (ctrbench[track]) not installed"
)
@pytest.mark.parametrize("given,store", [c[1:] for c in MLFLOW_URIS], ids=[c[0] for c in MLFLOW_URIS])
def test_mlflow_run_has_params_metrics_and_artifacts(given, store, load, tmp_path, monkeypatch, capsys):
    """Every form the --help names works with mlflow 3 (whose file store refuses to start): a file: URI or
    a folder becomes a SQLite store in that folder, with the artifacts beside it."""
    import mlflow

    from tests.test_bad_input_runs import ctrbench

    monkeypatch.chdir(tmp_path)
    tmp = str(tmp_path)
    args = ["run", "--expid", "LR_tiny", "--config", CONFIG, "--data-root", str(tmp_path / "data")]
    args += ["--results", str(tmp_path / "r.jsonl"), "--set", f"model_root={tmp}/ck", "--set", "log_steps=2"]
    code, _, err = ctrbench(args + ["--mlflow", given.replace("{tmp}", tmp)], capsys)
    assert code == 0, err[-3000:]
    record = json.loads((tmp_path / "r.jsonl").read_text())
    client = mlflow.tracking.MlflowClient(tracking_uri=store.replace("{tmp}", tmp))
    (exp,) = [e for e in client.search_experiments() if e.name == "tiny"]
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["model"] == "LR" and run.info.status == "FINISHED"
    assert run.data.metrics["final_test/AUC"] == pytest.approx(record["test"]["AUC"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid/AUC")] == [7]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "record.json" in names


def test_tracking_flags_name_their_extra_in_help():
    from typer.testing import CliRunner

    from benchmark.cli import app

    text = " ".join(CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output.split())
    assert text.count("needs ctrbench[track]") == 2, text


@pytest.mark.parametrize(
    "flag,module,package",
    [("--tensorboard", "torch.utils.tensorboard", "tensorboard"), ("--mlflow", "mlflow", "mlflow")],
)
def test_missing_tracking_extra_is_one_error_line(tmp_path, monkeypatch, capsys, flag, module, package):
    from benchmark import cli

    monkeypatch.setitem(sys.modules, module, None)  # import fails as if the package were absent
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "ctrbench",
            "run",
            "--expid",
            "LR_tiny",
            "--config",
            CONFIG,
            "--data-root",
            str(tmp_path / "data"),
            "--results",
            str(tmp_path / "r.jsonl"),
            "--set",
            f"model_root={tmp_path}/ck",
            flag,
            str(tmp_path / "x"),
        ],
    )
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert f"{flag} needs the '{package}' package" in err and "pip install 'ctrbench[track]'" in err
    assert not os.path.exists(tmp_path / "r.jsonl") and not os.path.exists(tmp_path / "x")
