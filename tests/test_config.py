import os
import textwrap

import pytest

from benchmark.config import coerce_numbers, load_config, parse_set
from benchmark.errors import CTRBenchError
from tests.conftest import CONFIG


def write_config(tmp_path, model_yaml, dataset_yaml):
    (tmp_path / "model_config").mkdir()
    (tmp_path / "dataset_config").mkdir()
    (tmp_path / "model_config" / "m.yaml").write_text(textwrap.dedent(model_yaml))
    (tmp_path / "dataset_config" / "d.yaml").write_text(textwrap.dedent(dataset_yaml))
    return str(tmp_path)


DATASET = """
ds:
  data_root: ../raw/
  train_data: ../raw/ds/train.csv
  valid_data: ds/valid.csv
  min_categr_count: 2
  feature_cols: [{name: a, type: categorical, dtype: str, fill_na: "0"}]
  label_col: {name: label, dtype: float}
"""


def test_base_merge_coercion_and_dataset_lookup(tmp_path):
    cfg = write_config(
        tmp_path,
        """
        Base: {model_root: ./ck/, learning_rate: 1.e-2, batch_size: 64}
        E1: {model: DNN, dataset_id: ds, learning_rate: 1e-3, embedding_regularizer: "1e-5", net_dropout: "0.1"}
    """,
        DATASET,
    )
    p = load_config(cfg, "E1")
    assert p["learning_rate"] == 1e-3 and isinstance(p["learning_rate"], float)
    assert p["embedding_regularizer"] == 1e-5
    assert p["net_dropout"] == 0.1
    assert p["batch_size"] == 64  # from Base
    assert p["min_categr_count"] == 2  # from the dataset section
    assert p["feature_cols"][0]["fill_na"] == "0"  # data specs keep their strings
    assert p["model_id"] == "E1" and p["dataset_id"] == "ds"
    # paths: data_root relative to the config dir, split paths relative to data_root
    root = os.path.normpath(os.path.join(cfg, "../raw"))
    assert p["data_root"] == root
    assert p["train_data"] == os.path.join(root, "ds", "train.csv")
    assert p["valid_data"] == os.path.join(root, "ds", "valid.csv")


def test_set_overrides_with_yaml_typing(tmp_path):
    cfg = write_config(tmp_path, "E1: {model: DNN, dataset_id: ds}\n", DATASET)
    p = load_config(
        cfg,
        "E1",
        [
            "learning_rate=1e-4",
            "hidden_units=[8, 4]",
            "batch_norm=true",
            "min_categr_count=5",
            "feature_specs.0=x",
        ],
    )
    assert p["learning_rate"] == 1e-4
    assert p["hidden_units"] == [8, 4]
    assert p["batch_norm"] is True
    assert p["min_categr_count"] == 5  # --set beats the dataset section


def test_data_root_option_rebases_paths(tmp_path):
    cfg = write_config(tmp_path, "E1: {model: DNN, dataset_id: ds}\n", DATASET)
    p = load_config(cfg, "E1", data_root=str(tmp_path / "elsewhere"))
    assert p["train_data"] == str(tmp_path / "elsewhere" / "ds" / "train.csv")
    assert p["build_root"] == str(tmp_path / "elsewhere")


def test_unknown_expid_suggests_closest():
    with pytest.raises(CTRBenchError, match="did you mean 'DCN_tiny'"):
        load_config(CONFIG, "DCN_tinny")


def test_unknown_dataset_id(tmp_path):
    cfg = write_config(tmp_path, "E1: {model: DNN, dataset_id: dz}\n", DATASET)
    with pytest.raises(CTRBenchError, match="unknown dataset_id 'dz'.*did you mean 'ds'"):
        load_config(cfg, "E1")


def test_malformed_yaml_names_file_and_line(tmp_path):
    cfg = write_config(tmp_path, "E1:\n  model: DNN\n  dataset_id: [ds\n", DATASET)
    with pytest.raises(CTRBenchError) as err:
        load_config(cfg, "E1")
    assert "m.yaml:" in err.value.message and "malformed YAML" in err.value.message


def test_duplicate_expid_is_an_error(tmp_path):
    cfg = write_config(tmp_path, "E1: {model: DNN, dataset_id: ds}\n", DATASET)
    (tmp_path / "model_config" / "n.yaml").write_text("E1: {model: FM, dataset_id: ds}\n")
    with pytest.raises(CTRBenchError, match="defined twice"):
        load_config(cfg, "E1")


def test_non_numeric_learning_rate_is_reported(tmp_path):
    cfg = write_config(tmp_path, "E1: {model: DNN, dataset_id: ds, learning_rate: fast}\n", DATASET)
    with pytest.raises(CTRBenchError, match="learning_rate"):
        load_config(cfg, "E1")


def test_coerce_numbers_and_parse_set():
    assert coerce_numbers({"a": "1e-3", "b": ["2", "x"], "feature_cols": [{"fill_na": "0"}]}) == {
        "a": 1e-3,
        "b": [2, "x"],
        "feature_cols": [{"fill_na": "0"}],
    }
    assert parse_set(["a.b=3"]) == {"a.b": 3}
    with pytest.raises(CTRBenchError):
        parse_set(["novalue"])


def test_paths_resolve_against_the_folder_above_the_yaml_file(tmp_path, monkeypatch):
    """ctrbench's layout (config/dataset_config/<name>.yaml): the config directory, from any cwd."""
    cfg = write_config(tmp_path, "E1: {model: DNN, dataset_id: ds}\n", DATASET)
    monkeypatch.chdir("/")
    p = load_config(cfg, "E1")
    root = os.path.normpath(os.path.join(cfg, "../raw"))
    assert p["data_root"] == root and p["build_root"] == root
    assert p["train_data"] == os.path.join(root, "ds", "train.csv")  # starts with data_root: not joined again


def test_fuxictr_experiment_folder_paths(tmp_path, monkeypatch):
    """FuxiCTR's layout (X/config/dataset_config.yaml): the experiment folder X; split paths repeat
    data_root and are not joined onto it; --data-root moves them along."""
    x = tmp_path / "zoo" / "IBNet" / "IBNet_torch"
    (x / "config").mkdir(parents=True)
    (x / "config" / "model_config.yaml").write_text("E1: {model: DNN, dataset_id: ds}\n")
    (x / "config" / "dataset_config.yaml").write_text(
        textwrap.dedent("""
        ds:
          data_root: ../../../data/
          train_data: ../../../data/ds_x1/train.csv
          valid_data: ../../../data/ds_x1/valid.csv
          test_data: ../other/test.csv
          feature_cols: [{name: a, type: categorical, dtype: str}]
          label_col: {name: label, dtype: float}
    """)
    )
    (x / ".." / "other").mkdir()
    (x / ".." / "other" / "test.csv").write_text("a,label\n")
    monkeypatch.chdir("/")
    p = load_config(str(x / "config"), "E1")
    data = str(tmp_path / "data")
    assert p["data_root"] == data and p["build_root"] == data
    assert p["train_data"] == os.path.join(data, "ds_x1", "train.csv")
    assert p["test_data"] == str(tmp_path / "zoo" / "IBNet" / "other" / "test.csv")  # exists beside X
    moved = load_config(str(x / "config"), "E1", data_root=str(tmp_path / "moved"))
    assert moved["valid_data"] == str(tmp_path / "moved" / "ds_x1" / "valid.csv")


def test_every_shipped_expid_passes_the_hyperparameter_rules():
    from benchmark.config import list_expids

    for expid in list_expids(CONFIG):
        load_config(CONFIG, expid)


def test_model_check_params_hook(tmp_path, monkeypatch):
    import model_zoo

    cls = model_zoo.get_model_class("DNN")

    def check_params(params):
        if params.get("hidden_activations") == "nope":
            err = ValueError("hidden_activations 'nope' is not an activation; use relu")
            err.key = "hidden_activations"
            raise err
        if params.get("batch_norm") == "maybe":
            raise ValueError("batch_norm must be true or false")

    monkeypatch.setattr(cls, "check_params", staticmethod(check_params), raising=False)
    cfg = write_config(tmp_path, "E1: {model: DNN, dataset_id: ds}\n", DATASET)
    load_config(cfg, "E1")
    with pytest.raises(CTRBenchError) as err:
        load_config(cfg, "E1", ["hidden_activations=nope"])
    assert err.value.message.startswith(
        "hidden_activations='nope' (expid 'E1', set by --set) is not valid for DNN"
    )
    with pytest.raises(CTRBenchError, match=r"expid 'E1' \(DNN\): batch_norm must be true or false"):
        load_config(cfg, "E1", ["batch_norm=maybe"])
