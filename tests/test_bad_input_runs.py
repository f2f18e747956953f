"""Bad input at the run level: each case is one `error:` line, exit code 2, no traceback, and leaves the
records and checkpoints of the earlier run untouched. Plus the properties behind them: runs of one expid
never share files, a record's metrics are those of its own weights, foreign files are never loaded."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from tests.conftest import CONFIG, REPO

FAST = ["--set", "verbose=0"]


def ctrbench(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAY_ADDRESS="")
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def snapshot(*roots) -> dict:
    """md5 of every file under the roots (lock files aside: a refused run may find one); logs whole."""
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
    """One finished DCN_tiny run: its records file, model_root and data root."""
    base = tmp_path_factory.mktemp("earlier")
    paths = {
        "results": str(base / "runs.jsonl"),
        "model_root": str(base / "ck"),
        "data": str(base / "data"),
        "base": str(base),
    }
    res = ctrbench(
        "run",
        "--expid",
        "DCN_tiny",
        "--data-root",
        paths["data"],
        "--results",
        paths["results"],
        "--set",
        f"model_root={paths['model_root']}",
        *FAST,
    )
    assert res.returncode == 0, res.stderr
    return paths


def _params(earlier, *sets):
    from benchmark.config import load_config

    params = load_config(
        CONFIG, "DCN_tiny", ["verbose=0", f"model_root={earlier['model_root']}", *sets], earlier["data"]
    )
    return params


def _run(earlier, *extra):
    return [
        "run",
        "--expid",
        "DCN_tiny",
        "--data-root",
        earlier["data"],
        "--results",
        earlier["results"],
        "--set",
        f"model_root={earlier['model_root']}",
        *FAST,
        *extra,
    ]


# ---- setups of the cases that need files ----------------------------------------------------------------


def _a_file(earlier, tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder\n")
    return str(path)


def _malicious_weights(earlier, tmp_path):
    """A pickle that would create a file when unpickled without weights_only."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.model"
    with open(path, "wb") as fd:
        pickle.dump({"w": Payload()}, fd)
    return str(path)


def _other_weights(earlier, tmp_path):
    """Weights of another model (LR) for the same data."""
    path = tmp_path / "lr.model"
    torch.save({"embedding_layer.weight": torch.zeros(3, 3)}, path)
    return str(path)


def _foreign_state(earlier, tmp_path):
    """A resume state of another config placed under this run's name."""
    from benchmark.runner import run_paths

    params = _params(earlier)
    payload = {"format": 2, "config_hash": "0123456789ab", "trainer": {}, "world_size": 1}
    torch.save(payload, run_paths(params).state)
    return run_paths(params).state


def _junk_state(earlier, tmp_path):
    from benchmark.runner import run_paths

    path = run_paths(_params(earlier)).state
    with open(path, "wb") as fd:
        fd.write(b"\x80\x04 truncated")
    return path


# (id, setup(earlier, tmp_path) -> value or None, args(earlier, value, tmp_path), what the error line says)
CASES = [
    (
        "results-is-a-directory",
        None,
        lambda e, v, t: _run(e)[:5] + ["--results", str(t)] + _run(e)[7:],
        ["is a directory", "runs.jsonl"],
    ),
    (
        "results-under-a-file",
        _a_file,
        lambda e, v, t: _run(e)[:5] + ["--results", os.path.join(v, "runs.jsonl")] + _run(e)[7:],
        ["--results", "is a file, not a directory"],
    ),
    (
        "results-on-a-read-only-fs",
        None,
        lambda e, v, t: _run(e)[:5] + ["--results", "/proc/ctrbench/runs.jsonl"] + _run(e)[7:],
        ["--results", "/proc", "not writable"],
    ),
    (
        "model-root-is-a-file",
        _a_file,
        lambda e, v, t: _run(e, "--set", f"model_root={v}"),
        ["model_root", "not writable", "--set model_root=DIR"],
    ),
    (
        "model-root-on-a-read-only-fs",
        None,
        lambda e, v, t: _run(e, "--set", "model_root=/proc/ctrbench"),
        ["model_root", "/proc/ctrbench"],
    ),
    ("monitor-unknown", None, lambda e, v, t: _run(e, "--set", "monitor=AUCC"), ["monitor", "AUCC", "AUC"]),
    (
        "epochs-zero-never-evaluates-the-old-checkpoint",
        None,
        lambda e, v, t: _run(e, "--set", "epochs=0"),
        ["epochs=0", ">= 1"],
    ),
    (
        "resume-state-of-another-config",
        _foreign_state,
        lambda e, v, t: _run(e, "--resume"),
        ["another config", "without --resume"],
    ),
    (
        "resume-state-damaged",
        _junk_state,
        lambda e, v, t: _run(e, "--resume"),
        ["cannot read the resume state", "delete it"],
    ),
    (
        "sweep-glob-matching-nothing-beside-one-that-matches",
        None,
        lambda e, v, t: [
            "sweep",
            "--expids",
            "DCN_tiny,DCN_tinyy*",
            "--results",
            e["results"],
            "--data-root",
            e["data"],
            "--set",
            f"model_root={e['model_root']}",
        ],
        ["DCN_tinyy*", "matches no expid"],
    ),
    (
        "sweep-ray-auto-without-a-cluster",
        None,
        lambda e, v, t: [
            "sweep",
            "--expids",
            "DCN_tiny",
            "--seeds",
            "7",
            "--ray-address",
            "auto",
            "--results",
            e["results"],
            "--data-root",
            e["data"],
        ],
        ["--ray-address auto", "ray start --head", "local"],
    ),
    (
        "bench-infer-checkpoint-missing",
        None,
        lambda e, v, t: [
            "bench-infer",
            "--expid",
            "DCN_tiny",
            "--data-root",
            e["data"],
            "--checkpoint",
            str(t / "nope.model"),
        ],
        ["--checkpoint", "nope.model", "is not a file"],
    ),
    (
        "bench-infer-checkpoint-is-code",
        _malicious_weights,
        lambda e, v, t: [
            "bench-infer",
            "--expid",
            "DCN_tiny",
            "--data-root",
            e["data"],
            "--batches",
            "1",
            "--repeats",
            "1",
            "--set",
            f"model_root={e['model_root']}",
            "--checkpoint",
            v,
        ],
        ["evil.model", "not a weights file torch can load safely"],
    ),
    (
        "bench-infer-checkpoint-of-another-model",
        _other_weights,
        lambda e, v, t: [
            "bench-infer",
            "--expid",
            "DCN_tiny",
            "--data-root",
            e["data"],
            "--batches",
            "1",
            "--repeats",
            "1",
            "--set",
            f"model_root={e['model_root']}",
            "--checkpoint",
            v,
        ],
        ["lr.model", "does not fit DCN"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_run_input_is_one_error_line_and_touches_nothing(case, earlier, tmp_path):
    name, setup, args, expected = case
    value = setup(earlier, tmp_path) if setup else None
    before = snapshot(earlier["model_root"], os.path.dirname(earlier["results"]))
    res = ctrbench(*args(earlier, value, tmp_path))
    assert res.returncode == 2, (res.returncode, res.stdout[-1000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    assert_untouched(before, snapshot(earlier["model_root"], os.path.dirname(earlier["results"])))
    assert not (tmp_path / "pwned").exists()  # the malicious pickle never ran


def test_a_second_identical_run_at_once_is_refused(earlier):
    """Same expid, seed and settings, same model_root, while the first holds its run lock."""
    from benchmark.runner import RunLock, run_paths

    before = snapshot(earlier["model_root"], os.path.dirname(earlier["results"]))
    with RunLock(run_paths(_params(earlier))):
        res = ctrbench(*_run(earlier))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is already running" in errors[0] and f"pid {os.getpid()}" in errors[0]
    assert_untouched(before, snapshot(earlier["model_root"], os.path.dirname(earlier["results"])))


def test_two_seeds_of_one_expid_at_once_keep_their_own_files_and_metrics(tmp_path):
    """Two `ctrbench run` of one expid with different seeds, same model_root, started together: each has its
    own checkpoint/state/log, and each record's metrics are those of the weights that run wrote."""
    from benchmark.config import load_config
    from benchmark.runner import prepare_run, run_paths
    from benchmark.train import Trainer, load_weights

    results, model_root, data = tmp_path / "runs.jsonl", tmp_path / "ck", tmp_path / "data"
    assert ctrbench("data", "build", "tiny", "--data-root", str(data)).returncode == 0
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
                str(data),
                "--results",
                str(results),
                "--set",
                f"model_root={model_root}",
                "--set",
                "epochs=2",
                *FAST,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
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
        params = load_config(
            CONFIG,
            "DCN_tiny",
            ["verbose=0", f"model_root={model_root}", "epochs=2", f"seed={seed}"],
            str(data),
        )
        paths = run_paths(params)
        assert paths.run_id == record["run_id"] and os.path.isfile(paths.checkpoint)
        assert (
            os.path.isfile(paths.log) and not os.path.exists(paths.state) and not os.path.exists(paths.lock)
        )
        setup = prepare_run(params, splits=("test",), require=("test",))
        load_weights(setup.model, paths.checkpoint)
        assert Trainer(setup.model, params).evaluate(setup.loaders["test"]) == record["test"]


def test_the_trainer_never_loads_weights_it_did_not_write(earlier, tmp_path):
    """A file already at the checkpoint path (another run's weights) is never evaluated: fit refuses a run
    without an epoch and leaves the file as it was."""
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
