"""Bad input, table-driven: every case is one ``ctrbench`` command that must end with exit code 2 and
exactly one ``error:`` line naming the file/key/value and the fix, without a traceback, leaving every
file that existed before (run records, checkpoints, built data, configs) byte for byte as it was.

Classes here: hyperparameters resolved from a config (issue 14.7), run records (14.3) and data paths
(15.1). The commands run in-process through ``benchmark.cli.main`` (the console entry point) in a
workspace that already holds a records file, a checkpoint and a built dataset.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Callable

import pytest

from benchmark import records as records_mod
from benchmark.records import append_record
from tests.conftest import CONFIG

# ---- the runner -------------------------------------------------------------------------------------


def snapshot(root: str) -> dict[str, str]:
    """relative path -> sha1 of every file under ``root``."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as fd:
                files[os.path.relpath(path, root)] = hashlib.sha1(fd.read()).hexdigest()
    return files


def ctrbench(args: list[str], cwd: str, capsys) -> tuple[int, str, str]:
    """``ctrbench ARGS`` in ``cwd`` through the console entry point: (exit code, stdout, stderr)."""
    from benchmark import cli

    argv, here = sys.argv, os.getcwd()
    capsys.readouterr()
    sys.argv = ["ctrbench", *args]
    os.chdir(cwd)
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # anything but a clean exit is what the suite exists to catch
        captured = capsys.readouterr()
        raise AssertionError(f"ctrbench {' '.join(args)} raised {type(exc).__name__}: {exc}\n{captured.err}")
    finally:
        sys.argv = argv
        os.chdir(here)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@dataclass
class Case:
    id: str
    args: list[str]  # {ws} is the workspace
    expect: list[str]  # substrings of the error line ({ws} substituted)
    setup: Callable[[str], None] | None = None
    patch: Callable[[pytest.MonkeyPatch, str], None] | None = None
    new_files: list[str] = field(default_factory=list)  # globs of files the case may add
    cwd: str = "{ws}"
    warnings: list[str] = field(default_factory=list)  # substrings expected on stderr besides the error
    xfail: str | None = None


def _fill(text: str, ws: str) -> str:
    return text.replace("{ws}", ws)


# ---- the workspace ----------------------------------------------------------------------------------

EARLIER = [
    {
        "expid": "DCN_tiny",
        "model": "DCN",
        "report_name": "DCN",
        "dataset_id": "tiny",
        "seed": s,
        "config_hash": f"h{s}",
        "test": {"AUC": 0.7 + s / 100, "logloss": 0.5},
        "params": 100,
    }
    for s in (1, 2)
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with run records, a checkpoint and the built ``tiny`` dataset (raw files included)."""
    from benchmark.config import load_dataset_config
    from benchmark.data.build import build

    ws = str(tmp_path_factory.mktemp("badinput"))
    for rec in EARLIER:
        append_record(os.path.join(ws, "results", "runs.jsonl"), rec)
    os.makedirs(os.path.join(ws, "checkpoints", "tiny"))
    with open(os.path.join(ws, "checkpoints", "tiny", "DCN_tiny_s2023_0123456789ab.model"), "wb") as fd:
        fd.write(os.urandom(256))
    build(load_dataset_config(CONFIG, "tiny", os.path.join(ws, "data")), quiet=True)
    assert os.path.isfile(os.path.join(ws, "data", "tiny", "feature_map.json"))
    return ws


def run_args(expid: str = "DCN_tiny", *sets: str, config: str = CONFIG) -> list[str]:
    args = [
        "run",
        "--expid",
        expid,
        "--config",
        config,
        "--data-root",
        "{ws}/data",
        "--results",
        "{ws}/results/runs.jsonl",
        "--set",
        "model_root={ws}/checkpoints",
        "--set",
        "verbose=0",
    ]
    for s in sets:
        args += ["--set", s]
    return args


# ---- 14.7 hyperparameters ---------------------------------------------------------------------------
# (setting, what the line must say): each rule of benchmark.config.RULES at least once, from --set.

HYPER = [
    ("learning_rate=0", "learning_rate=0 ", "must be a number > 0", "learning_rate: 1.0e-3"),
    ("learning_rate=-1e-3", "learning_rate=-0.001 ", "must be a number > 0", "e.g."),
    ("learning_rate=fast", "learning_rate='fast' ", "must be a number > 0", "e.g."),
    ("batch_size=0", "batch_size=0 ", "must be an integer >= 1", "batch_size: 4096"),
    ("batch_size=12.5", "batch_size=12.5 ", "must be an integer >= 1", "e.g."),
    ("eval_batch_size=0", "eval_batch_size=0 ", "must be an integer >= 1", "e.g."),
    ("epochs=2.7", "epochs=2.7 ", "must be an integer >= 1", "epochs: 100"),
    ("epochs=0", "epochs=0 ", "must be an integer >= 1", "e.g."),
    ("epochs=true", "epochs=True ", "must be an integer >= 1", "e.g."),
    ("embedding_dim=0", "embedding_dim=0 ", "must be an integer >= 1", "embedding_dim: 16"),
    ("embedding_dim=-4", "embedding_dim=-4 ", "must be an integer >= 1", "e.g."),
    ("net_dropout=1", "net_dropout=1 ", "must be a dropout rate in [0, 1)", "net_dropout: 0.1"),
    ("net_dropout=-0.1", "net_dropout=-0.1 ", "must be a dropout rate in [0, 1)", "e.g."),
    ("dropout=[0.1, 1.5]", "dropout=[0.1, 1.5] ", "(or a list of them, one per layer)", "dropout: 0.1"),
    (
        "dnn_hidden_units=[64, 0]",
        "dnn_hidden_units=[64, 0] ",
        "must be a list of positive integers",
        "dnn_hidden_units: [400, 400, 400]",
    ),
    ("dnn_hidden_units=64", "dnn_hidden_units=64 ", "must be a list of positive integers", "e.g."),
    (
        "dnn_hidden_units=[32, 1.5]",
        "dnn_hidden_units=[32, 1.5] ",
        "must be a list of positive integers",
        "e.g.",
    ),
    ("seed=1.5", "seed=1.5 ", "must be an integer", "seed: 2023"),
    ("seed=abc", "seed='abc' ", "must be an integer", "e.g."),
    ("seed=-1", "seed=-1 ", "must be an integer in 0 .. 4294967295 (2**32 - 1)", "seed: 2023"),
    ("seed=4294967296", "seed=4294967296 ", "must be an integer in 0 .. 4294967295", "e.g."),
    ("save_best_only=false", "save_best_only=False ", "ctrbench always keeps and evaluates the best", "true"),
    ("seed=null", "seed=None ", "must be set", "seed: 2023"),
    ("monitor=AUCC", "monitor='AUCC' ", "names metric 'AUCC' (did you mean 'AUC'?)", "monitor: AUC"),
    ("monitor={AUC: 1, loglos: -1}", "monitor={'AUC': 1, 'loglos': -1} ", "(did you mean 'logloss'?)", "AP"),
    ("monitor=[AUC]", "monitor=['AUC'] ", "must be a metric name or a mapping", "e.g."),
    ("metrics=[logloss, AUCC]", "metrics=['logloss', 'AUCC'] ", "names metric 'AUCC'", "choose among"),
    ("metrics=[]", "metrics=[] ", "must be a non-empty list of metric names", "metrics: [logloss, AUC]"),
    (
        "metrics=[AUC, gAUC]",
        "metrics=['AUC', 'gAUC'] ",
        "set group_id to the column that groups rows",
        "e.g.",
    ),
    ("monitor_mode=maximize", "monitor_mode='maximize' ", "must be one of max, min", "monitor_mode: max"),
    (
        "optimizer=adamm",
        "optimizer='adamm' ",
        "is not a torch.optim optimiser (did you mean 'adam'?)",
        "optimizer: adam",
    ),
    (
        "loss=bcee",
        "loss='bcee' ",
        "is not a loss of the model zoo (did you mean 'bce'?)",
        "binary_crossentropy",
    ),
    ("early_stop_patience=0", "early_stop_patience=0 ", "must be an integer >= 1", "early_stop_patience: 2"),
    ("eval_steps=0", "eval_steps=0 ", "must be an integer >= 1", "e.g."),
    ("max_gradient_norm=0", "max_gradient_norm=0 ", "must be a number > 0", "max_gradient_norm: 10.0"),
    ("data_block_size=-1", "data_block_size=-1 ", "must be an integer >= 0", "e.g."),
    ("logloss_eps=0.7", "logloss_eps=0.7 ", "must be a number in [0, 0.5)", "logloss_eps: 1.0e-7"),
    ("gpu=-3", "gpu=-3 ", "must be a device index, or -1 for CPU", "gpu: -1"),
    (
        "model=DeepFMM",
        "model='DeepFMM' ",
        "unknown model 'DeepFMM' (did you mean 'DeepFM'?)",
        "registered models",
    ),
]

CASES = [
    Case(f"hyper:{s}", run_args("DCN_tiny", s), [shown, "(expid 'DCN_tiny', set by --set)", why, fix])
    for s, shown, why, fix in HYPER
]


def _config_dir(
    ws: str, name: str, model_yaml: str, dataset_yaml: str | None = None, base_yaml: str | None = None
) -> str:
    cfg = os.path.join(ws, "cases", name)
    os.makedirs(os.path.join(cfg, "model_config"))
    os.makedirs(os.path.join(cfg, "dataset_config"))
    with open(os.path.join(cfg, "model_config", "m.yaml"), "w") as fd:
        fd.write(textwrap.dedent(model_yaml))
    if base_yaml:
        with open(os.path.join(cfg, "model_config", "base.yaml"), "w") as fd:
            fd.write(textwrap.dedent(base_yaml))
    if dataset_yaml is None:
        shutil.copy(
            os.path.join(CONFIG, "dataset_config", "synthetic.yaml"), os.path.join(cfg, "dataset_config")
        )
    else:
        with open(os.path.join(cfg, "dataset_config", "d.yaml"), "w") as fd:
            fd.write(textwrap.dedent(dataset_yaml))
    return cfg


CASES += [
    Case(
        "hyper:from-expid-file",
        run_args("E", config="{ws}/cases/expid_file"),
        [
            "epochs=2.7 (expid 'E', from {ws}/cases/expid_file/model_config/m.yaml:1)",
            "must be an integer >= 1",
        ],
        setup=lambda ws: _config_dir(ws, "expid_file", "E: {model: DNN, dataset_id: tiny, epochs: 2.7}\n"),
    ),
    Case(
        "hyper:from-base-section",
        run_args("E", config="{ws}/cases/base_file"),
        [
            "batch_size=0 (expid 'E', from {ws}/cases/base_file/model_config/base.yaml:1)",
            "must be an integer >= 1",
        ],
        setup=lambda ws: _config_dir(
            ws, "base_file", "E: {model: DNN, dataset_id: tiny}\n", base_yaml="Base: {batch_size: 0}\n"
        ),
    ),
    Case(
        "hyper:nested-embedding-dim",
        run_args("E", config="{ws}/cases/nested"),
        [
            "maskfusion.generator_hidden_units=[64, 0] (expid 'E', from {ws}/cases/nested/model_config/m.yaml:5)",
            "must be a list of positive integers",
        ],
        setup=lambda ws: _config_dir(
            ws,
            "nested",
            "E:\n  model: MaskFusion_DNN\n  dataset_id: tiny\n  maskfusion:\n"
            "    generator_hidden_units: [64, 0]\n",
        ),
    ),
    Case(
        "hyper:unknown-model-in-file",
        run_args("E", config="{ws}/cases/nomodel"),
        [
            "model='NoSuchNet' (expid 'E', from {ws}/cases/nomodel/model_config/m.yaml:1)",
            "unknown model 'NoSuchNet'",
            "registered models",
        ],
        setup=lambda ws: _config_dir(ws, "nomodel", "E: {model: NoSuchNet, dataset_id: tiny}\n"),
    ),
]


# ---- 14.3 run records -------------------------------------------------------------------------------


def _no_space(monkeypatch, ws):
    """Every write to the records file fails half way with ENOSPC (a full disk)."""
    real_write = os.write
    target = os.path.join(ws, "results", "runs.jsonl")

    def write(fd, data):
        if os.path.exists(target) and os.path.samefile(f"/proc/self/fd/{fd}", target):
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(records_mod.os, "write", write)


def _torn_only(ws):
    with open(os.path.join(ws, "results", "torn.jsonl"), "w") as fd:
        fd.write('{"expid": "DCN_tiny", "seed": 3, "te')


REPORT_FIX = "(a run records file or a ledger)"
CASES += [
    Case(
        "records:report-out-is-results",
        ["report", "--results", "{ws}/results/runs.jsonl", "--out", "{ws}/results/runs.jsonl"],
        [
            "--out {ws}/results/runs.jsonl is the run records file given as --results",
            "would replace the records",
            "choose another file, e.g. {ws}/results/runs_table.md",
        ],
    ),
    Case(
        "records:report-out-is-another-records-file",
        ["report", "--results", "{ws}/results/runs.jsonl", "--out", "{ws}/results/ledger.jsonl"],
        ["--out {ws}/results/ledger.jsonl holds JSON records", REPORT_FIX, "choose another file"],
        setup=lambda ws: open(os.path.join(ws, "results", "ledger.jsonl"), "w").write('{"status": "done"}\n'),
    ),
    Case(
        "records:report-out-is-a-directory",
        ["report", "--results", "{ws}/results/runs.jsonl", "--out", "{ws}/results"],
        ["--out {ws}/results is a directory", "give a file name"],
    ),
    Case(
        "records:report-on-a-file-of-torn-lines",
        ["report", "--results", "{ws}/results/torn.jsonl"],
        ["no run records match"],
        setup=_torn_only,
        warnings=["{ws}/results/torn.jsonl:1: skipped, a torn last line"],
    ),
    Case(
        "records:report-on-a-missing-file",
        ["report", "--results", "{ws}/results/nope.jsonl"],
        ["no run records at {ws}/results/nope.jsonl", "pass --results"],
    ),
    Case(
        "records:append-fails-with-a-full-disk",
        run_args("LR_tiny", "epochs=1"),
        [
            "could not append the run record to {ws}/results/runs.jsonl (No space left on device)",
            "the record is kept in {ws}/results/runs.jsonl.unsaved-",
            "cat ",
            ">> {ws}/results/runs.jsonl",
        ],
        patch=_no_space,
        new_files=["results/runs.jsonl.unsaved-*", "checkpoints/tiny/LR_tiny*", "data/tiny/*"],
    ),
]


# ---- 15.1 data paths --------------------------------------------------------------------------------

FUXICTR_DATASET = """
Frappe_x1_h5:
    data_root: ../../../data/
    data_format: h5
    train_data: ../../../data/Frappe_x1_h5/train.h5
    valid_data: ../../../data/Frappe_x1_h5/valid.h5
    test_data: ../../../data/Frappe_x1_h5/test.h5
frappe_csv:
    data_root: ../../../data/
    train_data: ../../../data/Frappe_x1/train.csv
    valid_data: ../../../data/Frappe_x1/valid.csv
    test_data: ../../../data/Frappe_x1/test.csv
    feature_cols: [{name: [user, item], active: True, dtype: str, type: categorical}]
    label_col: {name: label, dtype: float}
"""


def _fuxictr_folder(ws):
    x = os.path.join(ws, "fx", "model_zoo", "DNN", "DNN_torch")
    os.makedirs(os.path.join(x, "config"))
    with open(os.path.join(x, "config", "dataset_config.yaml"), "w") as fd:
        fd.write(textwrap.dedent(FUXICTR_DATASET))
    with open(os.path.join(x, "config", "model_config.yaml"), "w") as fd:
        fd.write(
            "DNN_h5: {model: DNN, dataset_id: Frappe_x1_h5, epochs: 1}\n"
            "DNN_csv: {model: DNN, dataset_id: frappe_csv, epochs: 1}\n"
        )
    os.makedirs(os.path.join(ws, "fx", "data", "Frappe_x1_h5"))  # moved away: only an empty folder


def _typo_config(ws):
    _config_dir(
        ws,
        "typo",
        "E: {model: DNN, dataset_id: typo}\n",
        """
        typo:
          data_root: ../data/
          train_data: ../data/raw/tiny/trian.csv
          valid_data: ../data/raw/tiny/valid.csv
          feature_cols: [{name: [C1, C2], active: True, dtype: str, type: categorical}]
          label_col: {name: label, dtype: float}
    """,
    )


# a run that gets as far as its data opens its log first; nothing else may appear
LOGS = ["checkpoints/*/*.log", "fx/model_zoo/DNN/DNN_torch/checkpoints/*/*.log"]
FX = "{ws}/fx/model_zoo/DNN/DNN_torch"
RULE = "the folder above the dataset config's; a split path that starts with data_root is not joined onto it again"
CASES += [
    Case(
        "paths:fuxictr-folder-csv-missing",
        ["run", "--expid", "DNN_csv", "--config", "./config/", "--results", "{ws}/results/runs.jsonl"],
        [
            "dataset 'frappe_csv' is missing {ws}/fx/data/Frappe_x1/train.csv",
            f"resolve against {FX}",
            RULE,
            "point --data-root at the folder holding it",
        ],
        setup=_fuxictr_folder,
        cwd=FX,
        new_files=LOGS,
    ),
    Case(
        "paths:fuxictr-folder-h5-directory-empty",
        ["run", "--expid", "DNN_h5", "--config", "./config/", "--results", "{ws}/results/runs.jsonl"],
        ["{ws}/fx/data/Frappe_x1_h5", "feature_map.json", "train.h5"],
        setup=_fuxictr_folder,
        cwd=FX,
        new_files=LOGS,
    ),
    Case(
        "paths:split-typo-in-the-config",
        run_args("E", config="{ws}/cases/typo"),
        ["dataset 'typo' is missing {ws}/data/raw/tiny/trian.csv", "resolve against {ws}/cases/typo", RULE],
        setup=lambda ws: _typo_config(ws),
        new_files=LOGS,
    ),
    Case(
        "paths:data-root-elsewhere",
        [
            "run",
            "--expid",
            "DNN_csv",
            "--config",
            "./config/",
            "--data-root",
            "{ws}/empty",
            "--results",
            "{ws}/results/runs.jsonl",
        ],
        ["dataset 'frappe_csv' is missing {ws}/empty/Frappe_x1/train.csv", "point --data-root"],
        setup=lambda ws: (_fuxictr_folder(ws), os.makedirs(os.path.join(ws, "empty"))),
        cwd=FX,
        new_files=LOGS,
    ),
    Case(
        "paths:set-split-path-from-the-working-directory",
        run_args("E", "train_data=raw/tiny/train.csv", config="{ws}/cases/typo"),
        ["dataset 'typo' is missing {ws}/raw/tiny/train.csv"],
        setup=lambda ws: _typo_config(ws),
        new_files=LOGS,
    ),
    Case(
        "paths:config-directory-missing",
        ["run", "--expid", "DCN_tiny", "--config", "{ws}/no_config"],
        ["config directory {ws}/no_config does not exist", "pass --config DIR"],
    ),
    Case(
        "paths:config-directory-without-model-config",
        ["run", "--expid", "DCN_tiny", "--config", "{ws}/data"],
        ["no model_config.yaml or model_config/*.yaml under {ws}/data", "pass --config"],
    ),
]


# ---- keys nothing reads, keys given twice (benchmark/keys.py) ----------------------------------------
# Each would run with the defaults and record them. (--set or YAML, the key, where, the suggestions.)

KEYS_MODEL = """\
E:
  model: DNN
  dataset_id: tiny
  learnig_rate: 1.e-2
E_nested:
  model: MaskFusion_DNN
  dataset_id: tiny
  maskfusion:
    smooth_l0: {enabled: false, x_inti: 0.5}
E_ds:
  model: DNN
  dataset_id: typo_ds
"""
KEYS_DATASET = """\
typo_ds:
  data_root: ../data/
  train_data: raw/tiny/train.csv
  min_categ_count: 2
  feature_cols: [{name: [C1, C2], active: True, dtype: str, type: categorical}]
  label_col: {name: label, dtype: float}
"""
DUP_MODEL = "E:\n  model: DNN\n  dataset_id: tiny\n  epochs: 1\n  hidden_units: [8]\n  epochs: 2\n"
DUP_DATASET = KEYS_DATASET.replace("typo_ds", "dup_ds").replace("  min_categ_count: 2\n", "") + (
    "  train_data: raw/tiny/valid.csv\n"
)
NOTES = "(a deliberate extra key goes under notes:)"


def keys_case(id: str, expid: str, expect: list[str], model=KEYS_MODEL, dataset=KEYS_DATASET, **kw) -> Case:
    """A run of ``expid`` from the config folder {ws}/cases/<id>: m.yaml, an optional base.yaml, and d.yaml
    beside ctrbench's synthetic.yaml (the ``tiny`` dataset)."""
    base = kw.pop("base", None)

    def setup(ws):
        folder = _config_dir(ws, id, model, None, base)
        with open(os.path.join(folder, "dataset_config", "d.yaml"), "w") as fd:
            fd.write(dataset)

    return Case(f"keys:{id}", run_args(expid, config=f"{{ws}}/cases/{id}"), expect, setup=setup, **kw)


M, D = "{ws}/cases/%s/model_config/m.yaml", "{ws}/cases/%s/dataset_config/d.yaml"
CASES += [
    Case(
        "keys:set-typo",
        run_args("DCN_tiny", "learnig_rate=1e-2"),
        ["unknown key 'learnig_rate' (--set learnig_rate=1e-2, expid 'DCN_tiny')", "'learning_rate'", NOTES],
    ),
    Case(
        "keys:set-abbreviation",
        run_args("DCN_tiny", "lr=0.01"),
        ["unknown key 'lr' (--set lr=0.01, expid 'DCN_tiny')", "did you mean 'learning_rate'"],
    ),
    Case(
        "keys:set-singular",
        run_args("DCN_tiny", "epoch=2"),
        ["unknown key 'epoch' (--set epoch=2, expid 'DCN_tiny')", "did you mean 'epochs'"],
    ),
    Case(
        "keys:set-another-models-key",
        run_args("DNN_tiny", "dnn_hidden_units=[8]"),
        ["unknown key 'dnn_hidden_units' (--set dnn_hidden_units=[8]", "model DNN", "'hidden_units'"],
    ),
    Case(
        "keys:set-dotted-unknown-block",
        run_args("DCN_tiny", "dnn.hidden_units=[8]"),
        ["unknown key 'dnn' (--set dnn.hidden_units=[8], expid 'DCN_tiny')"],
    ),
    Case(
        "keys:set-dotted-into-a-known-block",
        run_args("DCN_tiny", "synthetic.rowz=10"),
        ["unknown key 'synthetic.rowz' (--set synthetic.rowz=10", "the synthetic block has no key", "'rows'"],
    ),
    keys_case(
        "yaml-expid-typo",
        "E",
        [f"unknown key 'learnig_rate' ({M % 'yaml-expid-typo'}:4, expid 'E')", "'learning_rate'", NOTES],
    ),
    keys_case(
        "yaml-base-typo",
        "E",
        ["unknown key 'epoch' ({ws}/cases/yaml-base-typo/model_config/base.yaml:2, expid 'E')", "'epochs'"],
        base="Base:\n  epoch: 2\n",
    ),
    keys_case(
        "yaml-nested-typo",
        "E_nested",
        [
            f"unknown key 'maskfusion.smooth_l0.x_inti' ({M % 'yaml-nested-typo'}:9",
            "the maskfusion.smooth_l0 block has no key 'x_inti'",
            "'x_init'",
        ],
    ),
    keys_case(
        "yaml-dataset-typo",
        "E_ds",
        [f"unknown key 'min_categ_count' ({D % 'yaml-dataset-typo'}:4, expid 'E_ds')", "'min_categr_count'"],
    ),
    keys_case(
        "yaml-duplicate-key",
        "E",
        [f"{M % 'yaml-duplicate-key'}:4 and {M % 'yaml-duplicate-key'}:6", "key 'epochs' in 'E'", "keep one"],
        model=DUP_MODEL,
    ),
    keys_case(
        "yaml-duplicate-dataset-key",
        "E",
        [f"{D % 'yaml-duplicate-dataset-key'}:3 and {D % 'yaml-duplicate-dataset-key'}:6", "'train_data'"],
        model=DUP_MODEL.replace("  epochs: 2\n", ""),
        dataset=DUP_DATASET,
    ),
    keys_case(
        "yaml-duplicate-section",
        "E",
        [f"{M % 'yaml-duplicate-section'}:1 and {M % 'yaml-duplicate-section'}:13", "key 'E'"],
        model=KEYS_MODEL + "E:\n  model: LR\n  dataset_id: tiny\n",
    ),
    Case(
        "keys:expid-case-insensitive",
        ["run", "--expid", "dcn_tiny", "--config", CONFIG],
        ["unknown expid 'dcn_tiny' (did you mean 'DCN_tiny'?)"],
    ),
    Case(
        "keys:model-case-insensitive",
        run_args("DCN_tiny", "model=dcn"),
        ["model='dcn' (expid 'DCN_tiny', set by --set)", "unknown model 'dcn' (did you mean 'DCN'?)"],
    ),
]


# ---- the suite --------------------------------------------------------------------------------------


@pytest.fixture
def case_ws(workspace, request):
    """A fresh copy of the workspace for each case (cases never see each other's files)."""
    ws = os.path.join(os.path.dirname(workspace), f"case-{request.node.callspec.id.replace(':', '-')}")
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(workspace, ws)
    yield ws
    shutil.rmtree(ws, ignore_errors=True)


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case, case_ws, capsys, monkeypatch, caplog):
    ws = case_ws
    caplog.set_level("WARNING", logger="ctrbench")
    if case.setup:
        case.setup(ws)
    if case.patch:
        case.patch(monkeypatch, ws)
    before = snapshot(ws)
    code, _, err = ctrbench([_fill(a, ws) for a in case.args], _fill(case.cwd, ws), capsys)
    after = snapshot(ws)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(errors) == 1, err
    message = errors[0]
    for text in case.expect:
        assert _fill(text, ws) in message, f"{_fill(text, ws)!r} not in {message!r}"
    flat = " ".join((err + caplog.text).split())  # warnings: the console or, under pytest, the log capture
    for text in case.warnings:
        assert _fill(text, ws) in flat, f"{_fill(text, ws)!r} not in {flat!r}"
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"files changed or removed: {changed}"
    added = sorted(
        p for p in after if p not in before and not any(fnmatch.fnmatch(p, g) for g in case.new_files)
    )
    assert not added, f"files added: {added}"
    if case.id == "records:append-fails-with-a-full-disk":
        side = message.split("kept in ")[1].split(":")[0]
        (kept,) = [json.loads(line) for line in open(side)]
        assert kept["expid"] == "LR_tiny" and kept["test"]["AUC"] > 0


def test_the_table_covers_every_rule():
    from benchmark.config import RULES

    covered = {s.split("=")[0] for s, *_ in HYPER}
    for rule in RULES:
        key = rule.key.lstrip("*")
        assert any(k == key or (rule.key.startswith("*") and k.endswith(key)) for k in covered), rule.key
    assert len(CASES) >= 35


def test_report_warns_on_stderr_about_every_skipped_line(tmp_path):
    """The console entry point, as a user runs it: each skipped line is named file:line on stderr."""
    import subprocess

    path = tmp_path / "runs.jsonl"
    good = json.dumps(EARLIER[0])
    path.write_text(f"{good}\n| Model | AUC |\n[1, 2]\n{json.dumps(EARLIER[1])}\n{good[:30]}")
    res = subprocess.run(
        [sys.executable, "-m", "benchmark", "report", "--results", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    err = " ".join(res.stderr.split())
    assert f"{path}:2: skipped, not JSON" in err and f"{path}:3: skipped, a JSON list" in err
    assert f"{path}:5: skipped, a torn last line" in err
    assert "| DCN |" in res.stdout
