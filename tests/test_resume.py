"""Full-state resume: a run killed with SIGKILL mid-epoch and resumed ends bit-identical (CPU) to an
uninterrupted run with the same seed; the state holds weights, optimisers, LR, counters and RNG."""

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from benchmark.errors import CTRBenchError
from tests.conftest import REPO

# dropout (RNG), batch norm (buffers), a plateau LR decay and mid-epoch evaluations all in play
SETS = [
    "epochs=4",
    "batch_size=128",
    "seed=21",
    "net_dropout=0.2",
    "batch_norm=true",
    "learning_rate=3.e-3",
    "early_stop_patience=3",
    "eval_steps=5",
    "checkpoint_steps=1",
]

# Slows every optimiser step down so that the test can kill the run while it is mid-epoch.
DRIVER = """
import sys, time
from benchmark import train
step, delay = train.Trainer.train_step, float(sys.argv[1])
def slow(self, batch, weight=1.0):
    time.sleep(delay)
    return step(self, batch, weight)
train.Trainer.train_step = slow
sys.argv = ["ctrbench"] + sys.argv[2:]
from benchmark.cli import main
main()
"""


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _metrics_history(record):
    return [{k: v for k, v in h.items()} for h in record["history"]]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(train, load, data_root, tmp_path):
    with one_thread():
        reference = train("DCN_tiny", *SETS)
    results, progress = tmp_path / "runs.jsonl", tmp_path / "progress.json"
    model_root = tmp_path / "ck"
    args = [
        "run",
        "--expid",
        "DCN_tiny",
        "--data-root",
        data_root,
        "--results",
        str(results),
        "--set",
        f"model_root={model_root}",
        "--set",
        "verbose=0",
        *[x for s in SETS for x in ("--set", s)],
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "0.08", *args, "--progress-file", str(progress)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                p = json.loads(progress.read_text())
            except (OSError, ValueError):
                p = {}
            if p.get("status") == "train" and p.get("epoch", 0) >= 2 and p.get("batch", 0) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not results.exists()  # killed before any record
    from benchmark.runner import run_paths

    params = load("DCN_tiny", *SETS)
    params["model_root"] = str(model_root)
    state_file = run_paths(params).state  # <model_root>/tiny/DCN_tiny_s21_<config hash>.resume.pt
    assert os.path.dirname(state_file) == str(model_root / "tiny") and "_s21_" in state_file
    saved = torch.load(state_file, map_location="cpu", weights_only=True)  # tensors and plain values only
    assert saved["trainer"]["epoch"] >= 1 and saved["trainer"]["batch"] > 0  # mid-epoch
    assert saved["optimizers"][0]["state"] and saved["rng"]

    # resumed here (one thread, as the killed process had): what `ctrbench run --resume` runs
    from benchmark.runner import RunOptions, run

    with one_thread():
        run(params, RunOptions(results=str(results), resume=True, quiet=True))
    record = json.loads(results.read_text().splitlines()[-1])
    assert record["resumed"] == 1
    assert record["test"] == reference["test"] and record["valid"] == reference["valid"]
    assert record["best_epoch"] == reference["best_epoch"] and record["epochs_run"] == reference["epochs_run"]
    assert record["config_hash"] == reference["config_hash"]

    def strip(h):
        return [{k: v for k, v in e.items()} for e in h]

    assert strip(record["history"]) == strip(reference["history"])
    assert any(h["lr"] < 3e-3 for h in reference["history"]) or len(reference["history"]) >= 4
    assert not os.path.exists(state_file)  # removed once the record is written
    log = open(run_paths(params).log).read()  # the resumed run appended to the killed run's log
    assert log.count("Resumed from") == 1 and log.index("Save best model") < log.index("Resumed from")


def _trainer(load, *sets, state_file=None, config_hash="h"):
    from benchmark.runner import prepare_run
    from benchmark.train import Trainer

    setup = prepare_run(load("DCN_tiny", *SETS, *sets))
    return Trainer(setup.model, setup.params, state_file=state_file, config_hash=config_hash), setup.loaders


def test_resume_state_round_trip_and_config_check(load, tmp_path):
    with one_thread():
        full, loaders = _trainer(load)
        full.fit(loaders["train"], loaders["valid"], 3)
        ref = full.evaluate(loaders["test"])

        state = str(tmp_path / "s.pt")
        first, loaders = _trainer(load, state_file=state)
        first.fit(loaders["train"], loaders["valid"], 1)  # state saved at the epoch end
        second, loaders = _trainer(load, state_file=state)
        second.load_state()
        assert second.state.epoch == 1 and second.state.resumed == 1
        assert second.model.optimizer.state_dict()["state"]
        second.fit(loaders["train"], loaders["valid"], 3)
        assert second.evaluate(loaders["test"]) == ref
        assert [h["AUC"] for h in second.state.history] == [h["AUC"] for h in full.state.history]

        other, _ = _trainer(load, state_file=state, config_hash="another")
        with pytest.raises(CTRBenchError, match="another config"):
            other.load_state()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    junk, _ = _trainer(load, state_file=str(tmp_path / "junk.pt"))
    with pytest.raises(CTRBenchError, match="cannot read the resume state"):
        junk.load_state()


def _split_optimisers(model):
    """The model steps two optimisers through its own ``optimizers()`` (not fuxictr's ``optimizer`` and
    ``aux_optimizers``): Adam on the embeddings beside the main one on the rest."""
    named = list(model.named_parameters())
    model.optimizer = torch.optim.Adam([p for n, p in named if "embedding" not in n], lr=1e-3)
    extra = torch.optim.Adam([p for n, p in named if "embedding" in n], lr=1e-3)
    model.optimizers = lambda: [model.optimizer, extra]
    return extra


def test_resume_restores_every_optimiser_of_model_optimizers(load, tmp_path):
    state = str(tmp_path / "s.pt")
    with one_thread():
        first, loaders = _trainer(load, state_file=state)
        extra = _split_optimisers(first.model)
        first.fit(loaders["train"], loaders["valid"], 1)  # state saved at the epoch end
        saved = copy.deepcopy(extra.state_dict()["state"])
        second, _ = _trainer(load, state_file=state)
        extra2 = _split_optimisers(second.model)
        second.load_state()
    restored = extra2.state_dict()["state"]
    assert saved and restored.keys() == saved.keys()
    for key, values in saved.items():
        for name, tensor in values.items():
            assert torch.equal(restored[key][name], tensor), (key, name)


# ---- around a killed run: the saved state is kept until the user chooses -------------------------------

KILLED_SETS = ["verbose=0", "checkpoint_steps=1", "log_steps=1"]


class _Killed(Exception):
    pass


class _KillAt:
    """A callback that stops the run at ``step`` the way a kill would: after the state of the step before
    was saved, before any record."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, step, logs):
        if step >= self.step:
            raise _Killed


def _interrupted(data_root, tmp_path) -> str:
    from benchmark.config import load_config
    from benchmark.runner import RunOptions, run, run_paths
    from tests.conftest import CONFIG

    params = load_config(CONFIG, "DCN_tiny", [*KILLED_SETS, f"model_root={tmp_path}/ck"], data_root)
    with pytest.raises(_Killed):
        run(params, RunOptions(quiet=True, callbacks=[_KillAt(3)]))
    assert os.path.isfile(run_paths(params).state)
    return run_paths(params).state


def _run_args(data_root, tmp_path, *sets) -> list[str]:
    args = ["run", "--expid", "DCN_tiny", "--data-root", data_root, "--results", str(tmp_path / "runs.jsonl")]
    for s in [*KILLED_SETS, f"model_root={tmp_path}/ck", *sets]:
        args += ["--set", s]
    return args


def _md5(path) -> str:
    import hashlib

    return hashlib.md5(open(path, "rb").read()).hexdigest()


AROUND_A_KILL = [
    # (id, flags, extra --set, exit code, substrings of stderr, the killed run's state afterwards)
    (
        "again-without-resume",
        [],
        [],
        2,
        ["an unfinished run of this config exists", "epoch 1, batch 2 (step 2)", "--resume", "--restart"],
        "kept",
    ),
    ("resume-and-restart", ["--resume", "--restart"], [], 2, ["contradict"], "kept"),
    ("restart", ["--restart"], [], 0, [], "removed"),
    ("resume", ["--resume"], [], 0, [], "removed"),
    (
        "resume-after-a-config-change",
        ["--resume"],
        ["learning_rate=0.002"],
        0,
        ["no saved state of this config", "learning_rate=0.001", "(now 0.002)", "starts from scratch"],
        "kept",
    ),
]


@pytest.mark.parametrize(
    "flags,sets,code,expect,after", [c[1:] for c in AROUND_A_KILL], ids=[c[0] for c in AROUND_A_KILL]
)
def test_around_a_killed_run(flags, sets, code, expect, after, data_root, tmp_path, capsys):
    from tests.test_bad_input_runs import ctrbench

    state = _interrupted(data_root, tmp_path)
    before = _md5(state)
    got, out, err = ctrbench(_run_args(data_root, tmp_path, *sets) + flags, capsys)
    assert got == code, err[-2000:]
    assert "Traceback" not in err
    text = " ".join(err.split())  # rich wraps long lines
    for piece in expect:
        assert piece in text, text
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and not (tmp_path / "runs.jsonl").exists(), err
    else:
        (record,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
        assert record["resumed"] == (1 if flags == ["--resume"] and not sets else 0)
    if after == "kept":
        assert _md5(state) == before
    else:
        assert not os.path.exists(state)


@pytest.fixture(scope="module")
def killed(data_root, tmp_path_factory):
    """One interrupted run's state file and its bytes (the cases below cut it and put it back)."""
    tmp = tmp_path_factory.mktemp("killed")
    state = _interrupted(data_root, tmp)
    return tmp, state, open(state, "rb").read()


@pytest.mark.parametrize("fraction", [0.0, 1e-4, 1e-3, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0])
def test_a_resume_state_cut_short_is_one_line(fraction, killed, data_root, capsys):
    from tests.test_bad_input_runs import ctrbench

    tmp_path, state, data = killed
    cut = min(int(len(data) * fraction), len(data) - 1)  # 1.0: all but the last byte
    with open(state, "wb") as fd:
        fd.write(data[:cut])
    code, _, err = ctrbench(_run_args(data_root, tmp_path) + ["--resume"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err
    assert "cannot read the resume state" in errors[0] and os.path.basename(state) in " ".join(err.split())
    assert os.path.getsize(state) == cut  # left for the user to delete
