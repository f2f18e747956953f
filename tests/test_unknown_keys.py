"""Every key of a resolved config is read by something (benchmark/keys.py).

The tables of known keys cannot go stale: the fuxictr table is checked against the installed wheel's
source, ctrbench's against every ``params.get("x")`` / ``params["x"]`` in benchmark/ and model_zoo/.
The command-line cases (exit 2, one line naming key, source and suggestions; keys given twice) are in
tests/test_bad_input.py under ``keys:``.
"""

from __future__ import annotations

import inspect
import os
import re
import textwrap

import pytest

from benchmark import keys
from benchmark.config import config_hash, load_config, read_yaml, yaml_line
from benchmark.errors import CTRBenchError
from tests.conftest import CONFIG, REPO

# ---- the fuxictr table against the wheel ---------------------------------------------------------

# dicts of run params in fuxictr's source (autotuner's config_dict is the tuner file, not a run's params)
FUXICTR_PARAM_DICTS = r"params|kwargs|para_dict|dataset_params|model_dict|found_params"
FUXICTR_READ = re.compile(rf"""\b(?:{FUXICTR_PARAM_DICTS})(?:\.get\(\s*|\[\s*)["']([A-Za-z_]\w*)["']""")
# arguments of fuxictr's entry points that are not config keys (objects the caller passes)
NOT_KEYS = {"self", "feature_map", "data_generator", "validation_data", "train_ddf", "meta_ddf"}
NOT_KEYS |= {"data_path", "feature_encoder", "stage", "split", "json_file"}


def _fuxictr_entry_points():
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import FeatureProcessor, build_dataset
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.dataloaders.npz_block_dataloader import NpzBlockDataLoader
    from fuxictr.pytorch.dataloaders.npz_dataloader import NpzDataLoader
    from fuxictr.pytorch.dataloaders.parquet_dataloader import ParquetDataLoader
    from fuxictr.pytorch.models import BaseModel

    return [
        BaseModel.__init__,
        BaseModel.fit,
        FeatureMap.load,
        FeatureProcessor.__init__,
        FeatureProcessor.fit,
        FeatureProcessor.read_data,
        build_dataset,
        RankDataLoader,
        NpzDataLoader.__init__,
        NpzBlockDataLoader.__init__,
        ParquetDataLoader.__init__,
    ]


def test_the_fuxictr_table_holds_every_key_the_wheel_reads():
    import fuxictr

    root = os.path.dirname(fuxictr.__file__)
    read: dict[str, str] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as fd:
                    for key in FUXICTR_READ.findall(fd.read()):
                        read.setdefault(key, os.path.relpath(path, root))
    for fn in _fuxictr_entry_points():
        for p in inspect.signature(fn).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in NOT_KEYS:
                read.setdefault(p.name, fn.__qualname__)
    read.pop("params", None)  # FeatureMap.load's argument: the params dict itself
    missing = {k: where for k, where in read.items() if k not in keys.FUXICTR_KEYS}
    missing = {k: where for k, where in missing.items() if k not in keys.FUXICTR_NOT_CONFIG}
    assert not missing, f"fuxictr reads keys missing from benchmark/keys.py FUXICTR_KEYS: {missing}"
    stale = [k for k in keys.FUXICTR_NOT_CONFIG if k not in read]
    assert not stale, f"FUXICTR_NOT_CONFIG names strings the wheel no longer reads: {stale}"
    # the load-bearing keys of a FuxiCTR experiment folder are among them
    assert {"model_root", "verbose", "metrics", "save_best_only", "group_id", "num_workers"} <= set(read)


# ---- ctrbench's tables against its own source -----------------------------------------------------

READ = re.compile(
    r"""\b(?:self\.params|params)(?:\.(?:get|pop|setdefault)\(\s*|\[\s*)["']([A-Za-z_]\w*)["']"""
)


def _sources(*folders):
    for folder in folders:
        for dirpath, _, names in os.walk(os.path.join(REPO, folder)):
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    with open(path, encoding="utf-8") as fd:
                        yield os.path.relpath(path, REPO), fd.read()


def _all_known() -> set[str]:
    import model_zoo

    known = set(keys.known_keys({}))
    for cls in model_zoo.registry().values():
        known |= set(keys.model_keys(cls, {}))
    return known


def test_every_key_the_source_reads_is_declared():
    """A key anyone adds to a ``params.get("x")`` (or a model's ``kwargs["x"]``) is declared somewhere."""
    known = _all_known()
    undeclared = []
    for path, text in _sources("benchmark", "model_zoo"):
        if path == os.path.join("benchmark", "keys.py"):
            continue  # its docstring shows the patterns
        pattern = keys.KWARGS_READ if path.startswith("model_zoo") else READ
        for m in pattern.finditer(text):
            if m.group(1) not in known:
                undeclared.append(f"{path}:{text.count(chr(10), 0, m.start()) + 1} {m.group(1)}")
    assert not undeclared, (
        "keys read but not declared (add them to benchmark/keys.py CTRBENCH_KEYS or config.DEFAULTS; a "
        f"model's to its constructor or its config_keys): {undeclared}"
    )


def test_every_declared_ctrbench_key_is_read_somewhere():
    """The declared tables do not outlive their readers (notes are read by nothing on purpose)."""
    text = "\n".join(
        t for p, t in _sources("benchmark", "model_zoo") if p != os.path.join("benchmark", "keys.py")
    )
    tables = {**keys.CTRBENCH_KEYS, **keys.RESOLVED_KEYS, **keys.ZOO_KEYS}
    stale = [k for k in tables if k != keys.NOTES_KEY and f'"{k}"' not in text and f"'{k}'" not in text]
    assert not stale, f"declared in benchmark/keys.py but read nowhere: {stale}"


# ---- resolution ------------------------------------------------------------------------------------


def _config(tmp_path, model_yaml: str, dataset_yaml: str | None = None) -> str:
    (tmp_path / "model_config").mkdir()
    (tmp_path / "dataset_config").mkdir()
    (tmp_path / "model_config" / "m.yaml").write_text(textwrap.dedent(model_yaml))
    (tmp_path / "dataset_config" / "d.yaml").write_text(
        textwrap.dedent(dataset_yaml or open(os.path.join(CONFIG, "dataset_config", "synthetic.yaml")).read())
    )
    return str(tmp_path)


def test_a_fuxictr_experiment_folder_resolves_unchanged(tmp_path):
    """FuxiCTR's Base template (num_workers, pickle_feature_encoder, debug_mode, feature_config ...)."""
    from tests.test_fuxictr_folder import DATASET_CONFIG, MODEL_CONFIG

    (tmp_path / "model_config.yaml").write_text(textwrap.dedent(MODEL_CONFIG))
    (tmp_path / "dataset_config.yaml").write_text(textwrap.dedent(DATASET_CONFIG))
    for expid in ("DNN_Frappe_h5", "DNN_tiny_example"):
        params = load_config(str(tmp_path), expid)
        assert params["num_workers"] == 3 and params["pickle_feature_encoder"] is True


@pytest.mark.parametrize(
    "sets",
    [
        ["notes=a baseline for the slides"],
        ["notes.why=baseline", "notes.ticket=42"],
    ],
)
def test_notes_hold_deliberate_extra_keys(tmp_path, sets):
    cfg = _config(tmp_path, "E: {model: DNN, dataset_id: tiny, notes: {owner: me, any: {nested: 1}}}\n")
    params = load_config(cfg, "E", sets)
    assert params["notes"] and config_hash(params) != config_hash(load_config(cfg, "E"))


def test_a_wrapper_reads_its_base_models_keys(tmp_path):
    cfg = _config(
        tmp_path,
        """
        W: {model: IBNetFramework, base_model: DNN, dataset_id: tiny, hidden_units: [8]}
        V: {model: IBNetFramework, base_model: DCN, dataset_id: tiny, dnn_hidden_units: [8]}
        """,
    )
    assert load_config(cfg, "W")["hidden_units"] == [8]
    assert load_config(cfg, "V")["dnn_hidden_units"] == [8]
    with pytest.raises(CTRBenchError, match="unknown key 'num_cros_layers'.*did you mean 'num_cross_layers'"):
        load_config(cfg, "V", ["num_cros_layers=2"])


def test_a_model_declares_keys_and_nested_blocks(tmp_path, monkeypatch):
    import functools

    import model_zoo

    cls = model_zoo.get_model_class("DNN")
    monkeypatch.setattr(cls, "config_keys", ("warmup_steps",), raising=False)
    monkeypatch.setattr(
        cls, "config_schema", {"schedule": {"kind": None, "decay": {"rate": 0.5}}}, raising=False
    )
    monkeypatch.setattr(keys, "_class_keys", functools.cache(keys._class_keys.__wrapped__))
    cfg = _config(tmp_path, "E: {model: DNN, dataset_id: tiny, warmup_steps: 10, schedule: {kind: cos}}\n")
    assert load_config(cfg, "E", ["schedule.decay.rate=0.1"])["schedule"]["decay"] == {"rate": 0.1}
    with pytest.raises(CTRBenchError) as err:
        load_config(cfg, "E", ["schedule.decay.rat=0.1"])
    assert err.value.message.startswith("unknown key 'schedule.decay.rat' (--set schedule.decay.rat=0.1, ")
    assert "the schedule.decay block has no key 'rat'" in err.value.message and "'rate'" in err.value.message


@pytest.mark.parametrize(
    "model, sets, key, block",
    [
        (
            "MaskFusion_DNN",
            ["maskfusion.smooth_l0.x_inti=0.1"],
            "maskfusion.smooth_l0.x_inti",
            "maskfusion.smooth_l0",
        ),
        ("MaskFusion_DCNv2", ["maskfusion.mask_typ=static"], "maskfusion.mask_typ", "maskfusion"),
        (
            "MaskFusion_DeepFM",
            ["maskfusion.dcn_controller.mod=stacked"],
            "maskfusion.dcn_controller.mod",
            "maskfusion.dcn_controller",
        ),
    ],
)
def test_maskfusion_hosts_refuse_a_misspelt_block_key_with_its_source(tmp_path, model, sets, key, block):
    """The hosts declare the ``maskfusion:`` block (``config_schema``): a typo stops at config resolution,
    naming the --set it came from, not at model build."""
    cfg = _config(tmp_path, f"E: {{model: {model}, dataset_id: tiny, maskfusion: {{enabled: true}}}}\n")
    assert load_config(cfg, "E", ["maskfusion.smooth_l0.x_init=0.1"])["maskfusion"]["smooth_l0"] == {
        "x_init": 0.1
    }
    with pytest.raises(CTRBenchError) as err:
        load_config(cfg, "E", sets)
    assert err.value.message.startswith(f"unknown key '{key}' (--set {sets[0]}, expid 'E')")
    assert f"the {block} block has no key '{key.rsplit('.', 1)[1]}'" in err.value.message


def test_overrides_name_the_file_that_passed_them(tmp_path):
    """reproduce and tune pass a cell's settings as overrides: the line names their file."""
    cfg = _config(tmp_path, "E: {model: DNN, dataset_id: tiny}\n")
    with pytest.raises(CTRBenchError) as err:
        load_config(cfg, "E", ["epoch=2"], overrides_from="results/targets/t.yaml (DNN on tiny)")
    assert (
        "unknown key 'epoch' (results/targets/t.yaml (DNN on tiny): epoch=2, expid 'E')" in err.value.message
    )


@pytest.mark.parametrize("seed", [0, 2023, 2**32 - 1])
def test_seeds_inside_numpys_range_pass(tmp_path, seed):
    cfg = _config(tmp_path, "E: {model: DNN, dataset_id: tiny}\n")
    assert load_config(cfg, "E", [f"seed={seed}"])["seed"] == seed


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_seeds_outside_numpys_range_are_named(tmp_path, seed):
    cfg = _config(tmp_path, "E: {model: DNN, dataset_id: tiny}\n")
    with pytest.raises(
        CTRBenchError, match=rf"seed={seed} \(expid 'E', set by --set\) must be an integer in 0"
    ):
        load_config(cfg, "E", [f"seed={seed}"])


# ---- suggestions and YAML lines --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, candidates, first",
    [
        ("lr", ["learning_rate", "loss", "log_steps"], "learning_rate"),
        ("bs", ["batch_size", "seed"], "batch_size"),
        ("epoch", ["epochs", "eval_steps"], "epochs"),
        ("learnig_rate", ["learning_rate", "loss"], "learning_rate"),
        ("dcn_tiny", ["LR_tiny", "DCN_tiny", "DNN_tiny"], "DCN_tiny"),
        ("DEEPFM", ["FM", "DeepFM", "WideDeep"], "DeepFM"),
        ("Learning_Rate", ["learning_rate"], "learning_rate"),
    ],
)
def test_suggestions_are_case_insensitive(name, candidates, first):
    assert keys.close_matches(name, candidates)[0] == first


def test_merged_keys_may_be_given_again_and_take_their_anchors_lines(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("_t: &t\n  a: 1\n  b: {c: 2}\nE:\n  <<: *t\n  a: 3\n")
    assert read_yaml(str(path))["E"] == {"a": 3, "b": {"c": 2}}
    assert yaml_line(str(path), ("E", "a")) == 6
    assert yaml_line(str(path), ("E", "b", "c")) == 3
    assert yaml_line(str(path), ("E", "zz")) == 4


@pytest.mark.parametrize(
    "text, lines, key",
    [
        ("E:\n  a: 1\n  a: 2\n", (2, 3), "'a' in 'E'"),
        ("E: {a: 1}\nF: {}\nE: {b: 2}\n", (1, 3), "'E'"),
        ("E:\n  m: {x: 1, y: 2,\n      x: 3}\n", (2, 3), "'x' in 'E.m'"),
        ("E:\n  l:\n    - {n: 1}\n    - {n: 2, n: 3}\n", (4, 4), "'n' in 'E.l.1'"),
    ],
)
def test_a_key_given_twice_names_both_lines(tmp_path, text, lines, key):
    """Tuner files, targets files and configs all go through read_yaml."""
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(CTRBenchError) as err:
        read_yaml(str(path))
    assert err.value.message.startswith(f"{path}:{lines[0]} and {path}:{lines[1]} both give key {key}")
