"""The zoo's registry and configs: every model has its expids and builds from them, the first line of its
docstring cites its paper, and settings that cannot build a model are ``ModelConfigError``s naming the key."""

from __future__ import annotations

import os

import pytest

import model_zoo
from model_zoo.errors import ModelConfigError
from model_zoo.testing import count_parameters, feature_map_from_vocab
from tests.conftest import CONFIG
from tests.test_baselines_closed_form_counts import build as build_small
from tests.test_baselines_closed_form_counts import fmap
from tests.test_baselines_interactions import mixed_map
from tests.test_baselines_logged_counts import MODELS, SMALL, build


def test_user_errors_are_ctrbench_errors():
    fmap = feature_map_from_vocab(SMALL, 4)
    with pytest.raises(ModelConfigError, match="model_structure"):
        build("DCNv2", fmap, embedding_dim=4, model_structure="serial")
    with pytest.raises(ModelConfigError, match="stacked_dnn_hidden_units"):
        build("DCNv2", fmap, embedding_dim=4, model_structure="stacked", dnn_hidden_units=[])
    with pytest.raises(ModelConfigError, match="dnn_hidden_units"):
        build("AutoIntPlus", fmap, embedding_dim=4, dnn_hidden_units=[])
    with pytest.raises(ModelConfigError, match="bridge_type"):
        build("EDCN", fmap, embedding_dim=4, bridge_type="sum")
    with pytest.raises(ModelConfigError, match="cin_hidden_units"):
        build("xDeepFM", fmap, embedding_dim=4, cin_hidden_units=[])


# ---- configs ------------------------------------------------------------------------------------
CONFIG_FILES = [
    "widedeep",
    "deepfm",
    "xdeepfm",
    "dcnv2",
    "autoint",
    "afn",
    "fignn",
    "graphfm",
    "edcn",
    "dcn_default",
]


def _my_expids():
    from benchmark.config import coerce_numbers, read_yaml

    out = {}
    for name in CONFIG_FILES:
        for expid, body in read_yaml(os.path.join(CONFIG, "model_config", f"{name}.yaml")).items():
            out[expid] = coerce_numbers(body)
    return out


def test_every_model_has_tiny_and_default_expids_that_build():
    expids = _my_expids()
    for model in MODELS + ["DCN"]:
        for suffix in ["_default"] if model == "DCN" else ["_tiny", "_default"]:
            body = expids[model + suffix]
            assert body["model"] == model
            if suffix == "_tiny":
                assert body["dataset_id"] in ("tiny", "tiny_cat") and body["epochs"] == 1
                assert body["batch_size"] == 256
            else:
                assert body["dataset_id"] == "Criteo_x1"
            params = {k: v for k, v in body.items() if k not in ("model", "dataset_id")}
            fmap = mixed_map(int(params["embedding_dim"])) if suffix == "_tiny" else criteo_shaped_map()
            assert count_parameters(build(model, fmap, **params)) > 0


def criteo_shaped_map():
    """39 fields like Criteo_x1 (13 numeric, 26 categorical) with small vocabularies."""
    return feature_map_from_vocab(
        {f"C{i}": 11 for i in range(1, 27)}, 10, numeric=[f"I{i}" for i in range(1, 14)]
    )


# --------------------------------------------------------------------------------------------------
# config errors name the key


@pytest.mark.parametrize(
    "name,over,key",
    [
        ("MaskNet", {"model_type": "stacked"}, "model_type"),
        ("MaskNet", {"model_type": "serial", "serial_block_units": []}, "serial_block_units"),
        ("CL4CTR", {"cl_augmentation": "shuffle"}, "cl_augmentation"),
        ("CL4CTR", {"cl_encoder": "transformer", "cl_num_heads": 3}, "cl_num_heads"),
        ("EulerNet", {"order_list": []}, "order_list"),
        ("FinalMLP", {"mlp1_hidden_units": [10], "mlp2_hidden_units": [8], "num_heads": 4}, "num_heads"),
        ("FinalMLP", {"fs1_context": ["nope"]}, "fs1_context"),
        ("FinalNet", {"block_type": "3B"}, "block_type"),
        ("FinalNet", {"residual_type": "concat", "block1_hidden_units": [7]}, "residual_type"),
        ("SAM", {"interaction_type": "SAM4"}, "interaction_type"),
        ("IPNN", {"product_type": "outer"}, "product_type"),
        ("KPNN", {"kernel_type": "tensor"}, "kernel_type"),
        ("DLRM", {"bottom_mlp_units": [8, 3]}, "bottom_mlp_units"),
        ("DLRM", {"interaction_op": "sum"}, "interaction_op"),
        ("FmFM", {"field_interaction_type": "scalar"}, "field_interaction_type"),
        ("FwFM", {"linear_type": "LV"}, "linear_type"),
    ],
)
def test_config_errors(name, over, key):
    with pytest.raises(ModelConfigError, match=key):
        build_small(name, fmap(numeric=True), **over)


def test_every_registered_model_has_tiny_and_default_expids():
    from benchmark.config import list_expids
    from tests.conftest import CONFIG

    expids = set(list_expids(CONFIG))
    for name in (
        "MaskNet",
        "CL4CTR",
        "EulerNet",
        "GDCN",
        "GDCNP",
        "DualMLP",
        "FinalMLP",
        "FinalNet",
        "AFM",
        "SAM",
        "PNN",
        "IPNN",
        "OPNN",
        "KPNN",
        "Wukong",
        "DLRM",
        "FmFM",
        "FwFM",
    ):
        assert f"{name}_tiny" in expids and f"{name}_default" in expids, name
        doc = model_zoo.describe(model_zoo.get_model_class(name))
        assert "20" in doc and ("(" in doc), f"{name}: docstring's first line must cite the paper"
