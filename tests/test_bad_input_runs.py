"""Bad input at the run level, table-driven: every case is one ``ctrbench`` command that must end with exit
code 2 and exactly one ``error:`` line naming the path/key/value and the fix, without a traceback, leaving
the records and checkpoints of an earlier run as they were (a run's log may only grow).

Classes here: runs sharing files (issue 14.1), stale weights (14.2), preflight (14.4), sweep and resume
details (14.8), untrusted files (14.9). The commands run in-process through ``benchmark.cli.main``; the
property tests after the table start real concurrent processes where concurrency is the point.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

from tests.conftest import CONFIG, REPO


def ctrbench(args: list[str], capsys) -> tuple[int, str, str]:
    """``ctrbench ARGS`` in-process through the console entry point: (exit code, stdout, stderr)."""
    from benchmark import cli

    argv = sys.argv
    capsys.readouterr()
    sys.argv = ["ctrbench", *args]
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # anything but a clean exit is what these cases exist to catch
        raise AssertionError(
            f"ctrbench {' '.join(args)} raised {type(exc).__name__}: {exc}\n{capsys.readouterr().err}"
        )
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(*roots) -> dict:
    """Every file under the roots: logs by content, the rest by md5 (lock files aside)."""
    out = {}
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                if name.endswith(".log"):
                    out[path] = open(path, "rb").read()
                elif not name.endswith(".lock"):
                    out[path] = hashlib.md5(open(path, "rb").read()).hexdigest()
    return out


def assert_untouched(before: dict, after: dict) -> None:
    """Every earlier file is still there and unchanged; a run's log may only have grown (append-only)."""
    assert set(after) == set(before), set(after) ^ set(before)
    for path, old in before.items():
        if path.endswith(".log"):
            assert after[path].startswith(old), path
        else:
            assert after[path] == old, path


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A finished DCN_tiny run: its records file, model_root (best checkpoint, log) and built data."""
    from benchmark.config import load_config
    from benchmark.runner import RunOptions, run

    ws = str(tmp_path_factory.mktemp("earlier"))
    params = load_config(CONFIG, "DCN_tiny", ["verbose=0", f"model_root={ws}/ck"], f"{ws}/data")
    record = run(params, RunOptions(results=f"{ws}/results/runs.jsonl", quiet=True)).record
    assert os.path.isfile(os.path.join(ws, "ck", "tiny", record["run_id"] + ".model"))
    return ws


def _params(ws: str, *sets):
    from benchmark.config import load_config

    return load_config(CONFIG, "DCN_tiny", ["verbose=0", f"model_root={ws}/ck", *sets], f"{ws}/data")


def _state_path(ws: str) -> str:
    from benchmark.runner import run_paths

    return run_paths(_params(ws)).state


# ---- files some cases need (each written into the case's own tmp folder, or as the run's state) --------


def _a_file(ws, tmp):
    with open(os.path.join(tmp, "a_file"), "w") as fd:
        fd.write("not a folder\n")


def _foreign_state(ws, tmp):
    """A resume state of another config under this run's name."""
    torch.save({"format": 2, "config_hash": "0123456789ab", "trainer": {}, "world_size": 1}, _state_path(ws))


def _damaged_state(ws, tmp):
    with open(_state_path(ws), "wb") as fd:
        fd.write(b"\x80\x04 truncated")


class _Payload:
    """Unpickled without weights_only, this would create the file ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _code_as_weights(ws, tmp):
    with open(os.path.join(tmp, "evil.model"), "wb") as fd:
        pickle.dump({"w": _Payload(os.path.join(tmp, "pwned"))}, fd)


def _weights_of_another_model(ws, tmp):
    torch.save({"embedding_layer.weight": torch.zeros(3, 3)}, os.path.join(tmp, "lr.model"))


# ---- the table -----------------------------------------------------------------------------------------

RUN = [
    "run",
    "--expid",
    "DCN_tiny",
    "--data-root",
    "{ws}/data",
    "--set",
    "model_root={ws}/ck",
    "--set",
    "verbose=0",
]
WITH_RESULTS = RUN + ["--results", "{ws}/results/runs.jsonl"]
INFER = [
    "bench-infer",
    "--expid",
    "DCN_tiny",
    "--data-root",
    "{ws}/data",
    "--set",
    "model_root={ws}/ck",
    "--batches",
    "1",
    "--repeats",
    "1",
]
SWEEP = [
    "sweep",
    "--results",
    "{ws}/results/runs.jsonl",
    "--data-root",
    "{ws}/data",
    "--set",
    "model_root={ws}/ck",
]


@dataclass
class Case:
    id: str
    args: list[str]  # {ws}: the earlier run's workspace, {tmp}: the case's tmp folder
    expect: list[str]  # substrings of the one error line
    setup: Callable[[str, str], None] | None = None


CASES = [
    # preflight (14.4): checked before the first step, nothing written
    Case(
        "results-is-a-directory", RUN + ["--results", "{tmp}"], ["--results", "is a directory", "runs.jsonl"]
    ),
    Case(
        "results-under-a-file",
        RUN + ["--results", "{tmp}/a_file/runs.jsonl"],
        ["--results", "a_file is a file, not a directory"],
        _a_file,
    ),
    Case(
        "results-on-a-read-only-filesystem",
        RUN + ["--results", "/proc/ctrbench/runs.jsonl"],
        ["--results", "/proc", "not writable"],
    ),
    Case(
        "model-root-is-a-file",
        WITH_RESULTS + ["--set", "model_root={tmp}/a_file"],
        ["model_root", "a_file", "not writable", "--set model_root=DIR"],
        _a_file,
    ),
    Case(
        "model-root-on-a-read-only-filesystem",
        WITH_RESULTS + ["--set", "model_root=/proc/ctrbench"],
        ["model_root", "/proc/ctrbench", "not writable"],
    ),
    Case("monitor-unknown", WITH_RESULTS + ["--set", "monitor=AUCC"], ["monitor", "AUCC", "AUC"]),
    # stale weights (14.2): no epoch, no evaluation of the checkpoint on disk
    Case("epochs-zero", WITH_RESULTS + ["--set", "epochs=0"], ["epochs=0", ">= 1"]),
    # resume (14.9): only the run's own state, only with its config hash, checked before any work
    Case(
        "resume-state-of-another-config",
        WITH_RESULTS + ["--resume"],
        ["another config", "without --resume"],
        _foreign_state,
    ),
    Case(
        "resume-state-damaged",
        WITH_RESULTS + ["--resume"],
        ["cannot read the resume state", "delete it"],
        _damaged_state,
    ),
    # sweeps (14.8)
    Case(
        "sweep-glob-matching-nothing-beside-one-that-matches",
        SWEEP + ["--expids", "DCN_tiny,DCN_tinyy*"],
        ["DCN_tinyy*", "matches no expid", "ctrbench expids"],
    ),
    Case(
        "sweep-ray-auto-without-a-cluster",
        SWEEP + ["--expids", "DCN_tiny", "--seeds", "7", "--ray-address", "auto", "--ray-gpus", "0"],
        ["--ray-address auto", "ray start --head", "--ray-address local"],
    ),
    # weights from elsewhere (14.9): weights_only=True, one line for anything else
    Case(
        "bench-infer-checkpoint-missing",
        INFER + ["--checkpoint", "{tmp}/nope.model"],
        ["--checkpoint", "nope.model", "is not a file"],
    ),
    Case(
        "bench-infer-checkpoint-that-is-code",
        INFER + ["--checkpoint", "{tmp}/evil.model"],
        ["evil.model", "not a weights file torch can load safely"],
        _code_as_weights,
    ),
    Case(
        "bench-infer-checkpoint-of-another-model",
        INFER + ["--checkpoint", "{tmp}/lr.model"],
        ["lr.model", "does not fit DCN"],
        _weights_of_another_model,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_run_input(case: Case, earlier, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    tmp = str(tmp_path)
    if case.setup:
        case.setup(earlier, tmp)
    before = snapshot(os.path.join(earlier, "ck"), os.path.join(earlier, "results"))
    args = [a.replace("{ws}", earlier).replace("{tmp}", tmp) for a in case.args]
    code, out, err = ctrbench(args, capsys)
    assert code == 2, (code, out[-1000:], err[-2000:])
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for text in case.expect:
        assert text in errors[0], errors[0]
    assert_untouched(before, snapshot(os.path.join(earlier, "ck"), os.path.join(earlier, "results")))
    assert not os.path.exists(os.path.join(tmp, "pwned"))  # the pickled code never ran
    if os.path.exists(_state_path(earlier)):  # the cases' resume states are theirs only
        os.remove(_state_path(earlier))


def test_a_second_identical_run_at_once_is_refused(earlier, capsys):
    """Same expid, seed and settings, same model_root, while another holds the run's lock."""
    from benchmark.runner import RunLock, run_paths

    before = snapshot(os.path.join(earlier, "ck"), os.path.join(earlier, "results"))
    with RunLock(run_paths(_params(earlier))):
        code, _, err = ctrbench([a.replace("{ws}", earlier) for a in WITH_RESULTS], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1
    assert "is already running" in errors[0] and f"pid {os.getpid()}" in errors[0] and "--seed" in errors[0]
    assert_untouched(before, snapshot(os.path.join(earlier, "ck"), os.path.join(earlier, "results")))


def test_two_seeds_of_one_expid_at_once_keep_their_own_files_and_metrics(earlier, tmp_path):
    """Two ``ctrbench run`` of one expid with different seeds, same model_root, at the same time: each has
    its own checkpoint and log, and each record's metrics are those of the weights that run wrote."""
    from benchmark.runner import prepare_run, run_paths
    from benchmark.train import Trainer, load_weights

    results, model_root = tmp_path / "runs.jsonl", tmp_path / "ck"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmark",
                "run",
                "--expid",
                "DCN_tiny",
                "--seed",
                str(seed),
                "--data-root",
                f"{earlier}/data",
                "--results",
                str(results),
                "--set",
                f"model_root={model_root}",
                "--set",
                "verbose=0",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    records = {r["seed"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert sorted(records) == [1, 2] and records[1]["run_id"] != records[2]["run_id"]
    assert records[1]["test"] != records[2]["test"]
    for seed, record in records.items():
        params = _params(earlier, f"seed={seed}", f"model_root={model_root}")
        paths = run_paths(params)
        assert paths.run_id == record["run_id"]
        assert os.path.isfile(paths.checkpoint) and os.path.isfile(paths.log)
        assert not os.path.exists(paths.state) and not os.path.exists(paths.lock)
        setup = prepare_run(params, splits=("test",), require=("test",))
        load_weights(setup.model, paths.checkpoint)
        assert Trainer(setup.model, params).evaluate(setup.loaders["test"]) == record["test"]


def test_the_trainer_never_loads_weights_it_did_not_write(earlier, tmp_path):
    """A file already at the checkpoint path (another run's weights) is never evaluated: ``fit`` refuses a
    run without an epoch and leaves the file as it was."""
    from benchmark.errors import CTRBenchError
    from benchmark.runner import prepare_run
    from benchmark.train import Trainer

    setup = prepare_run(_params(earlier, "seed=99"))
    setup.model.checkpoint = str(tmp_path / "foreign.model")
    torch.save({k: torch.zeros_like(v) for k, v in setup.model.state_dict().items()}, setup.model.checkpoint)
    stamp = open(setup.model.checkpoint, "rb").read()
    trainer = Trainer(setup.model, setup.params)
    with pytest.raises(CTRBenchError, match="at least one whole epoch"):
        trainer.fit(setup.loaders["train"], setup.loaders["valid"], 0)
    assert trainer.state.best_metric is None
    assert open(setup.model.checkpoint, "rb").read() == stamp
    assert any(float(p.detach().abs().sum()) > 0 for p in setup.model.parameters())  # zeros never loaded


# ---- a training loss that goes NaN or inf: stop at that step, one line, no record, the state kept --------


def _check_after_each_epoch(monkeypatch):
    """The deferred check of GPUs and torchrun (the bad step read at the next pause), here on the CPU."""
    from benchmark import train

    init = train.LossGuard.__init__

    def deferred(self, device, dist):
        init(self, device, dist)
        self.eager = False

    monkeypatch.setattr(train.LossGuard, "__init__", deferred)


@dataclass
class Divergence:
    id: str
    sets: list[str]
    expect: list[str]  # substrings of the one error line
    saved_step: int | None  # the step of the resume state left on disk (None: none)
    patch: Callable | None = None


DIVERGENCES = [
    Divergence("lr-1e6", ["learning_rate=1e6"], ["step 2 (batch 2", "loss is nan", "1e+06"], 1),
    Divergence("lr-1e30", ["learning_rate=1e30"], ["step 2 (batch 2", "loss is nan", "1e+30"], 1),
    Divergence(
        "lr-1e6-clipped-at-1",
        ["learning_rate=1e6", "max_gradient_norm=1"],
        ["max_gradient_norm=0.1, now 1"],
        1,
    ),
    Divergence("lr-1e38", ["learning_rate=1e38"], ["step 1 (batch 1", "optimiser step overflowed"], None),
    Divergence(
        "lr-1e6-deferred-check",
        ["learning_rate=1e6"],
        ["step 2 (batch 2", "loss is not finite"],
        1,
        _check_after_each_epoch,
    ),
    Divergence(
        "lr-1e6-deferred-to-the-epoch-end",
        ["learning_rate=1e6", "checkpoint_steps=0", "epochs=2"],
        ["step 2 (batch 2", "loss is not finite", "no resume state was saved"],
        None,
        _check_after_each_epoch,
    ),
]


@pytest.mark.parametrize("case", DIVERGENCES, ids=[c.id for c in DIVERGENCES])
def test_a_diverging_run_stops_at_the_bad_step(case: Divergence, earlier, tmp_path, capsys, monkeypatch):
    if case.patch:
        case.patch(monkeypatch)
    results = tmp_path / "runs.jsonl"
    args = [a.replace("{ws}", earlier) for a in RUN]
    args += ["--set", f"model_root={tmp_path}/ck", "--results", str(results), "--set", "checkpoint_steps=1"]
    for s in case.sets:
        args += ["--set", s]
    code, out, err = ctrbench(args, capsys)
    assert code == 2, (code, out[-1000:], err[-2000:])
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1, err
    line = errors[0]
    for text in ["training diverged at epoch 1", "learning_rate", "max_gradient_norm", *case.expect]:
        assert text in line, line
    assert not results.exists()  # no record as if it were a result
    states = [p for p in (tmp_path / "ck" / "tiny").iterdir() if p.name.endswith(".resume.pt")]
    if case.saved_step is None:
        assert not states
    else:
        (state,) = states  # the last good step's state, kept for the user
        assert str(state) in line
        saved = torch.load(state, map_location="cpu", weights_only=True)
        assert saved["trainer"]["total_steps"] == case.saved_step
        assert all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())


# ---- a full disk while a checkpoint or resume state is written ------------------------------------------


def _disk_full(monkeypatch, suffix: str, nth: int, after_bytes: int) -> None:
    """Writes of the ``nth`` file ending in ``suffix`` fail with ENOSPC once ``after_bytes`` are written."""
    import errno

    from benchmark import checkpoint

    write, saves = checkpoint._Sink.write, []

    def full(self, data):
        if suffix in os.path.basename(self.path):
            if not hasattr(self, "_nth"):  # this save's number among the saves of such files
                saves.append(self.path)
                self._nth = len(saves)
            written = getattr(self, "_written", 0)
            if self._nth == nth and written + len(data) > after_bytes:
                self.error = OSError(errno.ENOSPC, "No space left on device")
                raise self.error
            self._written = written + len(data)
        return write(self, data)

    monkeypatch.setattr(checkpoint._Sink, "write", full)


DISK_FULL = [
    # (id, file, which save of it fails, bytes written before it fails, step of the state left on disk)
    ("resume-state-first-byte", ".resume.pt", 3, 0, 2),
    ("resume-state-midway", ".resume.pt", 3, 2000, 2),
    ("resume-state-at-the-end", ".resume.pt", 3, 20000, 2),
    ("resume-state-first-save", ".resume.pt", 1, 100, None),
    ("best-checkpoint", ".model", 1, 500, 7),
]


@pytest.mark.parametrize(
    "suffix,nth,after,state_step", [c[1:] for c in DISK_FULL], ids=[c[0] for c in DISK_FULL]
)
def test_a_full_disk_while_saving_is_one_line(
    suffix, nth, after, state_step, earlier, tmp_path, capsys, monkeypatch
):
    _disk_full(monkeypatch, suffix, nth, after)
    results, folder = tmp_path / "runs.jsonl", tmp_path / "ck" / "tiny"
    args = [a.replace("{ws}", earlier) for a in RUN]
    args += ["--set", f"model_root={tmp_path}/ck", "--results", str(results), "--set", "checkpoint_steps=1"]
    code, out, err = ctrbench(args, capsys)
    assert code == 2, (code, out[-1000:], err[-2000:])
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1, err
    text = " ".join(err.split())
    assert "no space left to write" in text and suffix in text and "free in" in text and "model_root" in text
    assert not results.exists()
    assert not [p.name for p in folder.iterdir() if ".tmp-" in p.name]  # partial files removed
    states = [p for p in folder.iterdir() if p.name.endswith(".resume.pt")]
    if state_step is None:
        assert not states
    else:  # the earlier state is intact and loads
        (state,) = states
        saved = torch.load(state, map_location="cpu", weights_only=True)
        assert saved["trainer"]["total_steps"] == state_step


# ---- embedding tables that do not fit the device: one line before anything is allocated ----------------


def _table_need(ws, *sets) -> tuple[int, int]:
    """(embedding values, rows) of DLRM_tiny's tables with ``sets``, from the built feature map."""
    from benchmark.config import load_config
    from benchmark.runner import embedding_rows, prepare_data

    params = load_config(CONFIG, "DLRM_tiny", ["verbose=0", *sets], f"{ws}/data")
    _, feature_map = prepare_data(params, quiet=True)
    rows, values = embedding_rows(params, feature_map)
    return values, rows


TABLES_TOO_BIG = [
    # (id, --set, bytes the device has left as a function of (values, rows), exit code, substrings)
    (
        "adam",
        [],
        lambda v, r: 4 * v * 3,
        2,
        ["embedding tables", "adam state", "embedding_optimizer=rowwise_adagrad"],
    ),
    ("adam-fits", [], lambda v, r: 4 * v * 5, 0, []),
    ("sgd-fits-where-adam-does-not", ["optimizer=sgd"], lambda v, r: 4 * v * 3.5, 0, []),
    ("rowwise-adagrad-fits", ["embedding_optimizer=rowwise_adagrad"], lambda v, r: 4 * v * 3, 0, []),
    (
        "rowwise-adagrad-too",
        ["embedding_optimizer=rowwise_adagrad"],
        lambda v, r: 4 * v,
        2,
        ["a device with more"],
    ),
    ("hashed", ["hash_buckets=300"], lambda v, r: 4 * v * 3, 2, ["--set hash_buckets=N, now 300"]),
]


@pytest.mark.parametrize(
    "sets,have,code,expect", [c[1:] for c in TABLES_TOO_BIG], ids=[c[0] for c in TABLES_TOO_BIG]
)
def test_embedding_tables_that_do_not_fit_are_one_line(
    sets, have, code, expect, earlier, tmp_path, capsys, monkeypatch
):
    from benchmark import runner

    values, rows = _table_need(earlier, *sets)
    monkeypatch.setattr(runner, "device_memory", lambda device: (int(have(values, rows)), "available memory"))
    args = [
        "run",
        "--expid",
        "DLRM_tiny",
        "--data-root",
        f"{earlier}/data",
        "--results",
        str(tmp_path / "r.jsonl"),
    ]
    for s in ["verbose=0", f"model_root={tmp_path}/ck", *sets]:
        args += ["--set", s]
    got, out, err = ctrbench(args, capsys)
    assert got == code, err[-2000:]
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert "Traceback" not in err and len(errors) == 1, err
        text = " ".join(err.split())
        for piece in ["DLRM_tiny", f"{rows:,} rows", "GiB of available memory", *expect]:
            assert piece in text, text
        assert not (tmp_path / "r.jsonl").exists()
        assert not [p for p in (tmp_path / "ck").rglob("*") if p.suffix in (".model", ".pt")]
