"""ctrbench tune: the space file, a real SQLite study that prunes, an interrupted and a killed study
resumed to exactly the requested total, two processes on one study, and the tuned expid reproducing its
trial."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from benchmark import tune as tune_mod  # noqa: E402
from benchmark.config import load_config  # noqa: E402
from benchmark.errors import CTRBenchError  # noqa: E402
from benchmark.records import read_records  # noqa: E402
from tests.conftest import CONFIG, REPO  # noqa: E402

# 1e-9 leaves the model at its initialisation (valid AUC ~0.47 at every evaluation); 3e-2 learns (0.70+ at the
# second evaluation on the tiny fixture): the median pruner (from the second evaluation on, after two finished
# trials) must stop the first region.
SPACE = {"learning_rate": [1.0e-9, 3.0e-2], "embedding_dim": [4, 8], "net_dropout": [0, 0.1]}


def _space(tmp_path, body=None, name="space.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body or SPACE))
    return str(path)


def _args(tmp_path, data_root, space, trials, *extra, study="s"):
    return [
        "tune",
        "--expid",
        "DNN_tiny",
        "--space",
        space,
        "--trials",
        str(trials),
        "--config",
        CONFIG,
        "--data-root",
        data_root,
        "--results",
        str(tmp_path / "runs.jsonl"),
        "--study",
        study,
        "--set",
        f"model_root={tmp_path}/ck",
        "--set",
        "epochs=3",
        "--sampler-seed",
        "7",
        "--startup-trials",
        "2",
        "--warmup",
        "1",
        *extra,
    ]


def _invoke(args):
    from typer.testing import CliRunner

    from benchmark.cli import app

    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res


def _study(tmp_path, name="s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/tune/{name}.db")


def _states(study):
    return tune_mod.counts(study)


# ---- the space file (table-driven) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,kind,extra",
    [
        ([1, 2, 3], "categorical", {"choices": [1, 2, 3]}),
        ([[400, 400], [200]], "categorical", {"choices": [[400, 400], [200]]}),
        (["1e-3", "1e-2"], "categorical", {"choices": [1e-3, 1e-2]}),
        ({"low": "1e-4", "high": 1.0e-2, "log": True}, "float", {"low": 1e-4, "high": 1e-2, "log": True}),
        ({"low": 0, "high": 0.5, "step": 0.1}, "float", {"low": 0.0, "high": 0.5, "step": 0.1}),
        ({"int": [1, 6]}, "int", {"low": 1, "high": 6}),
        ({"int": [8, 64], "log": True}, "int", {"low": 8, "high": 64, "log": True}),
    ],
)
def test_space_entries(value, kind, extra):
    param = tune_mod.parse_param("k", value, "space.yaml")
    assert param.kind == kind
    for key, want in extra.items():
        assert getattr(param, key) == want


@pytest.mark.parametrize(
    "value",
    [
        [],
        {"low": 1},
        {"low": 2, "high": 1},
        {"low": 0, "high": 1, "log": True},
        {"int": [1.5, 3]},
        {"int": [1, 3], "bins": 2},
        {"min": 0, "max": 1},
        {"low": "a", "high": 1},
        {"low": 1e-3, "high": 1, "log": True, "step": 0.1},
    ],
)
def test_space_entry_errors_name_the_key(value):
    with pytest.raises(CTRBenchError, match="'k' in space.yaml"):
        tune_mod.parse_param("k", value, "space.yaml")


def test_space_fixed_values_unknown_and_dataset_keys(tmp_path, data_root):
    space = tune_mod.load_space(
        _space(
            tmp_path,
            {
                "tuner_space": {
                    "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
                    "batch_size": 128,
                    "net_dropout": [0.2],
                }
            },
        ),
        "DNN_tiny",
        CONFIG,
        None,
        data_root,
    )
    assert [p.name for p in space.params] == ["learning_rate"] and space.fixed == {
        "batch_size": 128,
        "net_dropout": 0.2,
    }
    spec = space.spec_for({"learning_rate": 0.01})
    params = spec.load()
    assert params["learning_rate"] == 0.01 and params["batch_size"] == 128 and params["net_dropout"] == 0.2
    with pytest.raises(
        CTRBenchError, match="'embeding_dim' .* not a setting of expid DNN_tiny.*embedding_dim"
    ):
        tune_mod.load_space(_space(tmp_path, {"embeding_dim": [4, 8]}), "DNN_tiny", CONFIG, None, data_root)
    with pytest.raises(
        CTRBenchError, match="setting of dataset tiny; tune dataset settings through a FuxiCTR"
    ):
        tune_mod.load_space(
            _space(tmp_path, {"min_categr_count": [1, 2]}), "DNN_tiny", CONFIG, None, data_root
        )
    with pytest.raises(CTRBenchError, match="--sampler grid needs choices only; learning_rate"):
        tune_mod.load_space(
            _space(tmp_path, {"learning_rate": {"low": 1e-4, "high": 1e-1}}),
            "DNN_tiny",
            CONFIG,
            None,
            data_root,
        ).grid()


def test_fuxictr_tuner_file_is_its_grid(tmp_path, data_root):
    doc = {
        "base_config": CONFIG,
        "base_expid": "DCN_tiny",
        "dataset_id": "tiny",
        "tuner_space": {"embedding_dim": [4, 6], "num_cross_layers": [1, 2, 3], "net_dropout": 0},
    }
    path = tmp_path / "DCN_tiny_tuner.yaml"
    path.write_text(yaml.safe_dump(doc))
    space = tune_mod.load_space(str(path), None, CONFIG, None, data_root)
    assert space.is_tuner_file and space.grid_size() == 6 and space.expid == "DCN_tiny"
    spec = space.spec_for({"embedding_dim": 6, "num_cross_layers": 2})
    assert spec.config_dir == str(tmp_path / "DCN_tiny_tuner")  # sweep's generated expids
    params = spec.load()
    assert (params["embedding_dim"], params["num_cross_layers"], params["net_dropout"]) == (6, 2, 0)
    with pytest.raises(CTRBenchError, match="differs from base_expid DCN_tiny"):
        tune_mod.load_space(str(path), "DNN_tiny", CONFIG, None, data_root)


# ---- a real study -----------------------------------------------------------------------------------


def test_study_prunes_resumes_to_the_total_and_the_tuned_expid_reproduces(tmp_path, data_root):
    space = _space(tmp_path)
    _invoke(_args(tmp_path, data_root, space, 3))  # an interrupted tune: 3 of 6 done
    study = _study(tmp_path)
    first = {t.number: t.user_attrs.get("seconds") for t in study.trials}
    assert _states(study)["COMPLETE"] + _states(study)["PRUNED"] == 3
    res = _invoke(_args(tmp_path, data_root, space, 6))  # resumed: exactly 6 in all
    study = _study(tmp_path)
    c = _states(study)
    assert c["COMPLETE"] + c["PRUNED"] == 6 and c["RUNNING"] == 0 and c["FAIL"] == 0
    assert c["PRUNED"] >= 1 and c["COMPLETE"] >= 1
    for t in study.trials:  # finished trials were not repeated
        if t.number in first:
            assert t.user_attrs.get("seconds") == first[t.number]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert any(t.params["learning_rate"] == 1e-9 for t in pruned)
    # every trial is an ordinary run: one record per trained config, none for pruned ones, no config twice
    records = read_records(str(tmp_path / "runs.jsonl"))
    hashes = [r["config_hash"] for r in records]
    assert len(hashes) == len(set(hashes))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.user_attrs["config_hash"] for t in complete} == set(hashes)
    assert not any(t.user_attrs["config_hash"] in hashes for t in pruned)
    assert not list((tmp_path / "ck" / "tiny").glob("*.resume.pt"))
    # outputs: tuned expid, table, plots, summary
    out = tmp_path / "tune" / "s"
    for name in ("history.png", "importances.png", "intermediate.png", "top_trials.md", "trials.csv"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    best = study.best_trial
    assert summary["best"]["number"] == best.number and summary["states"]["PRUNED"] == c["PRUNED"]
    assert "DNN_tiny_tuned" in res.output and f"best trial {best.number}" in res.output
    # the tuned expid, rerun with the same seed, reproduces the best trial's validation monitor
    params = load_config(str(out / "config"), "DNN_tiny_tuned", ["verbose=0"])
    assert params["learning_rate"] == best.params["learning_rate"] and params["epochs"] == 3
    from benchmark.runner import run

    params["model_root"] = str(tmp_path / "ck_repro")
    record = run(params).record
    assert record["valid"]["AUC"] == pytest.approx(best.value, abs=1e-9)
    # another space under the same study name is refused
    with pytest.raises(CTRBenchError, match="created for another space"):
        _invoke(
            _args(tmp_path, data_root, _space(tmp_path, {"learning_rate": [1e-3, 1e-2]}, "other.yaml"), 6)
        )


def test_killed_study_resumes_and_two_processes_share_it(tmp_path, data_root):
    """A tune killed (SIGKILL) mid-trial; then two processes on the study (a ``--worker`` process, as
    ``--jobs``/another machine starts, and a rerun of the command): the killed RUNNING trial is failed and
    run again from the run's saved state, the total is met exactly and no trial or config runs twice."""
    space = _space(
        tmp_path,
        {"learning_rate": [1.0e-9, 1.0e-2, 3.0e-2], "embedding_dim": [4, 6, 8], "net_dropout": [0, 0.1]},
    )
    args = _args(tmp_path, data_root, space, 6, "--set", "checkpoint_steps=2", "--set", "epochs=4", study="k")
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    ck = tmp_path / "ck" / "tiny"

    def poll(proc, ready, timeout=150):
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                found = ready()
            except Exception:  # the database is being created
                continue
            if found:
                return found
        return None

    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "killed.log", "w"),
    )
    try:

        def mid_trial():
            if not (list(ck.glob("*.resume.pt")) and (tmp_path / "runs.jsonl").exists()):
                return None  # no trial finished yet, or none in the middle of its training
            study = _study(tmp_path, "k")
            c = _states(study)
            running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING and t.params]
            if c["COMPLETE"] + c["PRUNED"] >= 1 and running and list(ck.glob("*.resume.pt")):
                return running[0]

        killed = poll(proc, mid_trial)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert killed is not None, (tmp_path / "killed.log").read_text()[-2000:]
    before = {t.number for t in _study(tmp_path, "k").trials}

    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmark", "tune", "--worker", *args[1:]],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        claimed = poll(
            worker,
            lambda: [
                t
                for t in _study(tmp_path, "k").trials
                if t.number not in before and t.user_attrs.get("pid") == worker.pid
            ],
        )
        assert claimed, "the worker process took no trial"
        _invoke(args)  # the second process: this one
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    study = _study(tmp_path, "k")
    c = _states(study)
    assert c["COMPLETE"] + c["PRUNED"] == 6 and c["RUNNING"] == 0
    assert study.trials[killed.number].state == optuna.trial.TrialState.FAIL  # failed, then enqueued again
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params
    assert retried[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    records = read_records(str(tmp_path / "runs.jsonl"))
    if retried[0].state == optuna.trial.TrialState.COMPLETE:
        (resumed,) = [r for r in records if r["config_hash"] == killed.user_attrs["config_hash"]]
        assert resumed["resumed"] == 1  # continued from its state
    new = [t for t in study.trials if t.number not in before and t.state != optuna.trial.TrialState.FAIL]
    assert {t.user_attrs["pid"] for t in new} == {worker.pid, os.getpid()}  # both processes took trials
    trained = [
        t.user_attrs["config_hash"]
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE and "reused" not in t.user_attrs
    ]
    assert len(trained) == len(set(trained))  # no config trained twice
    hashes = [r["config_hash"] for r in records]
    assert len(hashes) == len(set(hashes))


def test_missing_optuna_is_one_error_line(tmp_path, monkeypatch, capsys):
    from benchmark import cli

    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.setattr(sys, "argv", ["ctrbench", "tune", "--expid", "DNN_tiny", "--space", _space(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert "pip install 'ctrbench[tune]'" in err and "'optuna'" in err


class _Ref:
    def __init__(self, value):
        self.value = value


class _FakeRay:
    """Just enough of ray's API for sweep's executor: tasks run when they are submitted."""

    def __init__(self):
        self.inits, self.options, self.calls = [], [], []

    def init(self, **kw):
        self.inits.append(kw)

    def cluster_resources(self):
        return {"CPU": 2.0}

    def remote(self, **options):
        self.options.append(options)
        ray = self

        def wrap(fn):
            class Task:
                @staticmethod
                def remote(*args):
                    ray.calls.append(args)
                    return _Ref(fn(*args))

            return Task

        return wrap

    def wait(self, refs, num_returns, timeout):
        return list(refs), []

    def get(self, ref):
        return ref.value

    def cancel(self, ref, force=False):
        pass


def test_ray_tasks_are_workers_of_the_study(tmp_path, data_root):
    """--ray-address: sweep's Ray executor sends one worker loop per slot; they share the study's total."""
    path = _space(tmp_path, {"learning_rate": [1e-2, 3e-2]})
    sets = [f"model_root={tmp_path}/ck", "epochs=1"]
    space = tune_mod.load_space(path, "DNN_tiny", CONFIG, sets, data_root)
    cfg = tune_mod.TuneConfig(
        path,
        "DNN_tiny",
        CONFIG,
        sets,
        data_root,
        str(tmp_path / "runs.jsonl"),
        tune_mod.storage_url(None, str(tmp_path / "tune"), "r"),
        "r",
        2,
        "grid",
        "none",
    )
    tune_mod.open_study(cfg, space)
    fake = _FakeRay()
    executor = tune_mod.TuneRayExecutor("ray://head:10001", 2, 0.0, ray_module=fake)
    executor.start_workers(cfg)
    executor.wait(0.01)
    assert fake.inits[0]["address"] == "ray://head:10001" and fake.options[-1]["num_gpus"] == 0.0
    assert [call[1] for call in fake.calls] == [-1, -1]  # two workers, CPU
    study = _study(tmp_path, "r")
    assert _states(study)["COMPLETE"] == 2
    assert sorted(t.params["learning_rate"] for t in study.trials) == [1e-2, 3e-2]  # the grid, once each
    assert len(read_records(str(tmp_path / "runs.jsonl"))) == 2


# ---- a grid survives kill -9 (table-driven: which trial is killed) ----------------------------------------

_BLOCKING_TUNE = """
import os, sys, time
from benchmark.tune import worker as w

original, calls = w.Worker._run, []

def _run(self, trial, params, spec):
    calls.append(trial.number)
    if len(calls) == int(os.environ["BLOCK_AT"]) + 1:  # mid-trial: its values drawn, its lock held
        with open(os.environ["MARKER"], "w") as fd:
            fd.write(str(trial.number))
        time.sleep(600)
    return original(self, trial, params, spec)

w.Worker._run = _run
sys.argv = ["ctrbench", *sys.argv[1:]]
from benchmark.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("block_at", [0, 2], ids=["first-trial", "third-trial"])
def test_grid_killed_mid_trial_runs_every_point_once(tmp_path, data_root, block_at):
    """``tune --sampler grid`` killed (SIGKILL) while a trial trains, then run again: every grid point has
    exactly one finished trial and one record, and the study does not call itself done before that."""
    space = _space(tmp_path, {"embedding_dim": [4, 8], "net_dropout": [0, 0.1]})
    args = _args(tmp_path, data_root, space, 4, "--sampler", "grid", "--pruner", "none", study="g")
    args[args.index("epochs=3")] = "epochs=1"
    marker = tmp_path / "blocked"
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", BLOCK_AT=str(block_at), MARKER=str(marker))
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_TUNE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "killed.log", "w"),
    )
    try:
        deadline = time.time() + 150
        while time.time() < deadline and proc.poll() is None and not marker.exists():
            time.sleep(0.1)
        assert marker.exists(), (tmp_path / "killed.log").read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    killed = int(marker.read_text())
    assert _study(tmp_path, "g").trials[killed].state == optuna.trial.TrialState.RUNNING

    res = _invoke(args)
    assert "4/4 finished" in res.output
    study = _study(tmp_path, "g")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = sorted((t.params["embedding_dim"], t.params["net_dropout"]) for t in done)
    assert points == [(4, 0), (4, 0.1), (8, 0), (8, 0.1)], points
    records = read_records(str(tmp_path / "runs.jsonl"))
    hashes = [r["config_hash"] for r in records]
    assert len(hashes) == len(set(hashes)) == 4
    assert sorted(t.user_attrs["config_hash"] for t in done) == sorted(hashes)


# ---- errors are one line (table-driven; a subprocess, so Optuna's own log output is seen too) -----------


@pytest.mark.parametrize(
    "extra, expect",
    [
        (
            ["--storage", "sqlite:///{tmp}/missing/dir/x.db"],
            ["folder", "missing/dir does not exist", "mkdir -p"],
        ),
        (["--gpu", "0"], ["--gpu 0", "no GPU"]),
    ],
    ids=["storage-in-missing-folder", "gpu-without-gpu"],
)
def test_tune_errors_are_one_line(tmp_path, data_root, extra, expect):
    import torch

    if "--gpu" in extra and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    args = _args(
        tmp_path, data_root, _space(tmp_path), 1, *[e.replace("{tmp}", str(tmp_path)) for e in extra]
    )
    res = subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=REPO,
        env=dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = res.stdout + res.stderr
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert res.returncode == 2, output
    assert len(lines) == 1, output
    assert "Traceback" not in output and "failed with parameters" not in output, output
    for part in expect:
        assert part in lines[0], (part, lines[0])


# ---- an empty list of choices is an error wherever a grid is read (table-driven) ----------------------------


@pytest.mark.parametrize(
    "reader, tuner_file, space",
    [
        ("tune", False, {"embedding_dim": [], "net_dropout": [0, 0.1]}),
        ("tune", True, {"embedding_dim": [], "net_dropout": [0, 0.1]}),
        ("sweep", True, {"embedding_dim": [], "net_dropout": [0, 0.1]}),
        ("sweep", True, {"embedding_dim": [4], "min_categr_count": []}),
    ],
    ids=["tune-space", "tune-tuner-file", "sweep-tuner-file", "sweep-tuner-file-dataset-key"],
)
def test_empty_choice_list_is_an_error(tmp_path, data_root, reader, tuner_file, space):
    from benchmark import sweep as sweep_mod

    empty = next(k for k, v in space.items() if v == [])
    doc = {"base_config": CONFIG, "base_expid": "DNN_tiny", "dataset_id": "tiny", "tuner_space": space}
    path = _space(tmp_path, doc if tuner_file else space, "DNN_tiny_tuner.yaml")
    with pytest.raises(CTRBenchError, match=f"'{empty}' in .* is an empty list"):
        if reader == "tune":
            tune_mod.load_space(path, None if tuner_file else "DNN_tiny", CONFIG, None, data_root)
        else:
            sweep_mod.expand_tuner(path, data_root=data_root)


def test_ctrl_c_mid_trial_is_one_line(tmp_path, data_root):
    """Ctrl-C (SIGINT) while a trial trains: ctrbench's line on how to continue, exit 130, and no traceback
    from Optuna's log of the failed trial before it."""
    space = _space(tmp_path, {"embedding_dim": [4, 8]})
    args = _args(tmp_path, data_root, space, 2, "--sampler", "grid", study="c")
    marker = tmp_path / "blocked"
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", BLOCK_AT="0", MARKER=str(marker))
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_TUNE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 150
        while time.time() < deadline and proc.poll() is None and not marker.exists():
            time.sleep(0.1)
        assert marker.exists()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert "interrupted; rerun the same command to continue" in output
    assert "Traceback" not in output and "failed with parameters" not in output, output
