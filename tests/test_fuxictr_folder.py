"""A FuxiCTR 2.0 experiment folder runs unchanged, from that folder, without --data-root.

Layout (as the papers' repositories and FuxiCTR's model_zoo have it; the config three levels below
the data):

    data/Frappe_x1_h5/{train,valid,test}.h5 + feature_map.json    fuxictr 2.0's h5 layout
    data/tiny_csv/{train,valid,test}.csv                          a csv dataset
    model_zoo/DNN/DNN_torch/config/{model_config,dataset_config}.yaml
    model_zoo/DNN/DNN_torch/config/DNN_tuner_config.yaml          a tuner file with inline dataset_config

with ``data_root: ../../../data/`` and split paths that repeat it, all relative to the experiment
folder (where FuxiCTR's run_expid.py runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from benchmark.data import h5io
from tests.conftest import REPO

VOCAB = {"user": 12, "item": 20, "daytime": 7}
FEATURES = [
    {"name": "user", "active": True, "dtype": "str", "type": "categorical"},
    {"name": "item", "active": True, "dtype": "str", "type": "categorical"},
    {"name": "daytime", "active": True, "dtype": "str", "type": "categorical"},
]


def _rows(rng, n):
    cols = {name: rng.integers(1, size - 1, n) for name, size in VOCAB.items()}
    logit = (cols["user"] % 3 == 0) * 1.5 + (cols["item"] % 4 == 1) * 1.2 - 1.0
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return cols, label


def write_fuxictr20_h5(directory: str, dataset_id: str, seed: int = 5) -> None:
    """train/valid/test.h5 (one dataset per column, as fuxictr 2.0's save_h5) + its feature_map.json."""
    os.makedirs(directory)
    rng = np.random.default_rng(seed)
    for split, n in (("train", 600), ("valid", 200), ("test", 200)):
        cols, label = _rows(rng, n)
        h5io.write_block(
            os.path.join(directory, f"{split}.h5"),
            {"label": label, **{k: v.astype(np.float64) for k, v in cols.items()}},
        )
    features = [
        {
            name: {
                "source": "",
                "type": "categorical",
                "padding_idx": 0,
                "oov_idx": size - 1,
                "vocab_size": size,
            }
        }
        for name, size in VOCAB.items()
    ]
    feature_map = {
        "dataset_id": dataset_id,
        "num_fields": len(VOCAB),
        "total_features": sum(VOCAB.values()),
        "input_length": len(VOCAB),
        "labels": ["label"],
        "features": features,
    }
    with open(os.path.join(directory, "feature_map.json"), "w") as fd:
        json.dump(feature_map, fd, indent=4)


def write_csv(directory: str, seed: int = 6) -> None:
    os.makedirs(directory)
    rng = np.random.default_rng(seed)
    for split, n in (("train", 600), ("valid", 200), ("test", 200)):
        cols, label = _rows(rng, n)
        lines = ["label,user,item,daytime"]
        lines += [
            f"{int(y)},u{u},i{i},d{d}"
            for y, u, i, d in zip(label, cols["user"], cols["item"], cols["daytime"])
        ]
        with open(os.path.join(directory, f"{split}.csv"), "w") as fd:
            fd.write("\n".join(lines) + "\n")


DATASET_CONFIG = """
Frappe_x1_h5:
    data_root: ../../../data/
    data_format: h5
    train_data: ../../../data/Frappe_x1_h5/train.h5
    valid_data: ../../../data/Frappe_x1_h5/valid.h5
    test_data: ../../../data/Frappe_x1_h5/test.h5

tiny_example:
    data_root: ../../../data/
    data_format: csv
    train_data: ../../../data/tiny_csv/train.csv
    valid_data: ../../../data/tiny_csv/valid.csv
    test_data: ../../../data/tiny_csv/test.csv
    min_categr_count: 1
    feature_cols:
        - {name: [user, item, daytime], active: True, dtype: str, type: categorical}
    label_col: {name: label, dtype: float}
"""

MODEL_CONFIG = """
Base:
    model_root: './checkpoints/'
    num_workers: 3
    verbose: 0
    early_stop_patience: 2
    pickle_feature_encoder: True
    save_best_only: True
    eval_steps: null
    debug_mode: False
    group_id: null
    use_features: null
    feature_specs: null
    feature_config: null

DNN_Frappe_h5:
    model: DNN
    dataset_id: Frappe_x1_h5
    loss: 'binary_crossentropy'
    metrics: ['logloss', 'AUC']
    task: binary_classification
    optimizer: adam
    learning_rate: 1.e-3
    embedding_regularizer: 0
    net_regularizer: 0
    batch_size: 128
    embedding_dim: 4
    hidden_units: [16, 8]
    hidden_activations: relu
    net_dropout: 0
    batch_norm: False
    epochs: 1
    shuffle: True
    seed: 2019
    monitor: 'AUC'
    monitor_mode: 'max'

DNN_tiny_example:
    model: DNN
    dataset_id: tiny_example
    loss: 'binary_crossentropy'
    metrics: ['logloss', 'AUC']
    task: binary_classification
    optimizer: adam
    learning_rate: 1.e-3
    embedding_regularizer: 0
    net_regularizer: 0
    batch_size: 128
    embedding_dim: 4
    hidden_units: [16]
    hidden_activations: relu
    net_dropout: 0
    batch_norm: False
    epochs: 1
    shuffle: True
    seed: 2019
    monitor: 'AUC'
    monitor_mode: 'max'
"""

# FuxiCTR's tuner format: base_config relative to the experiment folder, an inline dataset_config
# (here under another dataset id, as BARS tuner files define theirs) and a tuner_space.
TUNER_CONFIG = """
base_config: ./config/
base_expid: DNN_tiny_example
dataset_id: tiny_tuned

dataset_config:
    tiny_tuned:
        data_root: ../../../data/
        data_format: csv
        train_data: ../../../data/tiny_csv/train.csv
        valid_data: ../../../data/tiny_csv/valid.csv
        test_data: ../../../data/tiny_csv/test.csv
        min_categr_count: 1
        feature_cols:
            - {name: [user, item, daytime], active: True, dtype: str, type: categorical}
        label_col: {name: label, dtype: float}

tuner_space:
    embedding_dim: [4, 6]
    seed: 2019
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """The experiment folder X (the data three levels above X/config's files' folder)."""
    root = tmp_path_factory.mktemp("fuxictr")
    write_fuxictr20_h5(str(root / "data" / "Frappe_x1_h5"), "Frappe_x1_h5")
    write_csv(str(root / "data" / "tiny_csv"))
    x = root / "model_zoo" / "DNN" / "DNN_torch"
    (x / "config").mkdir(parents=True)
    (x / "config" / "dataset_config.yaml").write_text(textwrap.dedent(DATASET_CONFIG))
    (x / "config" / "model_config.yaml").write_text(textwrap.dedent(MODEL_CONFIG))
    (x / "config" / "DNN_tuner_config.yaml").write_text(textwrap.dedent(TUNER_CONFIG))
    return x


def ctrbench(cwd, *args):
    env = dict(os.environ, PYTHONPATH=REPO, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def records(path):
    with open(path) as fd:
        return [json.loads(line) for line in fd]


@pytest.mark.parametrize("expid", ["DNN_Frappe_h5", "DNN_tiny_example"])
def test_run_from_the_experiment_folder(experiment, expid):
    res = ctrbench(experiment, "run", "--expid", expid, "--config", "./config/")
    assert res.returncode == 0, res.stderr
    assert f"{expid} test: logloss=" in res.stdout
    (record,) = [r for r in records(experiment / "results" / "runs.jsonl") if r["expid"] == expid]
    data = experiment.parents[2] / "data"
    assert record["config"]["data_root"] == str(data)
    assert 0 < record["test"]["AUC"] < 1 and record["seed"] == 2019
    if expid == "DNN_Frappe_h5":  # the legacy h5 directory is used in place, nothing is built
        assert record["config"]["train_data"] == str(data / "Frappe_x1_h5" / "train.h5")
        assert sorted(os.listdir(data / "Frappe_x1_h5")) == [
            "feature_map.json",
            "test.h5",
            "train.h5",
            "valid.h5",
        ]
    else:  # split paths are not joined onto data_root a second time
        assert record["config"]["train_data"] == str(data / "tiny_csv" / "train.csv")
        assert os.path.isfile(data / "tiny_example" / "feature_map.json")
    assert os.path.isdir(experiment / "checkpoints")  # model_root ./checkpoints/ from the folder


def test_a_moved_data_folder_is_named_with_the_rule(experiment, tmp_path):
    """The missing-file line names the resolved path and the rule that made it."""
    res = ctrbench(
        experiment,
        "run",
        "--expid",
        "DNN_tiny_example",
        "--config",
        "./config/",
        "--set",
        "train_data=../../../data/tiny_csv/nope.csv",
        "--results",
        str(tmp_path / "r.jsonl"),
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    line = " ".join(res.stderr.split())
    assert str(experiment.parents[2] / "data" / "tiny_csv" / "nope.csv") in line
    assert f"relative paths resolve against {experiment}" in line
    assert "a split path that starts with data_root is not joined onto it again" in line
    assert not os.path.exists(tmp_path / "r.jsonl")


def test_sweep_tuner_with_inline_dataset_config(experiment):
    res = ctrbench(
        experiment,
        "sweep",
        "--tuner",
        "./config/DNN_tuner_config.yaml",
        "--config",
        "./config/",
        "--results",
        "results/tuner.jsonl",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    runs = records(experiment / "results" / "tuner.jsonl")
    assert sorted(r["config"]["embedding_dim"] for r in runs) == [4, 6]
    data = experiment.parents[2] / "data"
    for r in runs:
        assert r["dataset_id"] == "tiny_tuned" and r["config"]["train_data"] == str(
            data / "tiny_csv" / "train.csv"
        )
        assert 0 < r["test"]["AUC"] < 1
    generated = experiment / "config" / "DNN_tuner_config" / "dataset_config.yaml"
    assert generated.is_file() and str(data) in generated.read_text()
