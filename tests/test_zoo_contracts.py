"""The zoo's contracts, for every registered model: field embeddings are built by ``CTRModel.field_embedding``
and read through ``CTRModel.embed`` only; config validation and the model accept the same optimiser names and
the same choices (so a config that validates builds, and one that would not build is refused before any data
is built)."""

from __future__ import annotations

import pytest
import torch
from fuxictr.pytorch.layers import FeatureEmbedding, LogisticRegression
from fuxictr.pytorch.torch_utils import get_optimizer

from benchmark.config import load_config
from benchmark.errors import CTRBenchError
from model_zoo import get_model_class
from model_zoo.base import CTRModel, make_optimizer
from model_zoo.baselines.edcn import BRIDGE_TYPES
from model_zoo.errors import ModelConfigError
from model_zoo.options import OPTIMIZERS, check_choice, optimizer_class
from model_zoo.testing import feature_map_from_vocab, model_kwargs
from tests.conftest import CONFIG
from tests.test_zoo_pinned import NOT_MODEL_KEYS, NUMERIC, VOCAB, batch, one_expid_per_model

EXPIDS = one_expid_per_model()


def params_of(expid: str, *sets: str) -> dict:
    return load_config(CONFIG, expid, ["verbose=0", *sets], "/nonexistent")


def build(params: dict, numeric=NUMERIC):
    kwargs = {k: v for k, v in params.items() if k not in NOT_MODEL_KEYS}
    kwargs.update(gpu=-1, verbose=0, model_root="/nonexistent")
    fmap = feature_map_from_vocab(VOCAB, int(params.get("embedding_dim") or 8), numeric=numeric)
    return get_model_class(params["model"])(fmap, **kwargs), fmap


# ---- embeddings: one factory, one reader ---------------------------------------------------------
@pytest.mark.parametrize("model", sorted(EXPIDS))
def test_embeddings_are_built_by_the_factory_and_read_through_embed(model, monkeypatch):
    built, reading = [], []
    factory, embed = CTRModel.field_embedding, CTRModel.embed

    def counting_factory(self, *args, **kwargs):
        layer = factory(self, *args, **kwargs)
        built.append(layer)
        layer.register_forward_pre_hook(
            lambda module, args: None if reading or id(module) in first_order else pytest.fail(name(module))
        )
        return layer

    def reading_embed(self, *args, **kwargs):
        reading.append(True)
        try:
            return embed(self, *args, **kwargs)
        finally:
            reading.pop()

    monkeypatch.setattr(CTRModel, "field_embedding", counting_factory)
    monkeypatch.setattr(CTRModel, "embed", reading_embed)
    try:
        net, fmap = build(params_of(EXPIDS[model]))
    except ModelConfigError as exc:  # settings for more fields than the tiny map has
        pytest.skip(str(exc))

    def name(module):
        return next(n for n, m in net.named_modules() if m is module)

    # a LogisticRegression reads its 1-wide table of first-order weights itself (the zoo's builds it with
    # the factory, fuxictr's holds its own)
    first_order = {id(m) for lr in net.modules() if isinstance(lr, LogisticRegression) for m in lr.modules()}
    kinds = (FeatureEmbedding, *{type(m) for m in built})  # fuxictr's layer and whatever the factory makes
    tables = [m for m in net.modules() if isinstance(m, kinds) and id(m) not in first_order]
    assert {id(m) for m in tables} <= {id(m) for m in built}, (
        f"{model} builds an embedding outside field_embedding"
    )
    net.train()
    net(batch(fmap))


def test_embed_names_a_second_table():
    net, fmap = build(params_of(EXPIDS["FwFM"], "linear_type=FeLV"))
    X = net.get_inputs(batch(fmap))
    assert torch.equal(net.embed(X, layer="linear_embedding"), net.linear_embedding(X))
    assert net.embed(X, flatten=True).shape == (16, net.feature_map.sum_emb_out_dim())


# ---- optimisers: one table for config validation and the model --------------------------------
@pytest.mark.parametrize("name", ["nadam", "NAdam", "adam", "AdamW", "adagrad", "RMSprop", "sgd"])
def test_an_optimizer_that_validates_builds_and_steps(name):
    params = params_of("DNN_tiny", f"optimizer={name}")
    net, fmap = build(params)
    assert type(net.optimizer).__name__.lower() == name.lower()
    loss = net.compute_loss(net(batch(fmap)), net.get_labels(batch(fmap)))
    loss.backward()
    net.optimizer.step()


@pytest.mark.parametrize("name", ["nadamm", "adam_w", "Optimizer", 3])
def test_an_unknown_optimizer_is_refused_by_both(name):
    with pytest.raises(CTRBenchError, match="optimizer"):
        params_of("DNN_tiny", f"optimizer={name}")
    with pytest.raises(ModelConfigError, match="optimizer"):
        make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], 1e-3)


def test_optimizer_table_is_fuxictrs_set_in_any_case():
    """fuxictr's get_optimizer builds every class the table names (as written)."""
    weights = [torch.nn.Parameter(torch.zeros(2, 2))]  # 2-D: Muon takes matrices only
    for lower, cls_name in OPTIMIZERS.items():
        assert type(get_optimizer(cls_name, weights, 1e-3)) is optimizer_class(lower)
    assert "nadam" in OPTIMIZERS and "optimizer" not in OPTIMIZERS


@pytest.mark.parametrize(
    "check, hint",
    [
        (lambda: get_model_class("AUTOINTPLUS"), "did you mean 'AutoIntPlus'"),
        (lambda: get_model_class("DEEPFM"), "did you mean 'DeepFM'"),
        (lambda: check_choice("bridge_type", "HADAMARD_PRODUCT", BRIDGE_TYPES), "'hadamard_product'"),
        (lambda: optimizer_class("rmsProp_"), "did you mean 'rmsprop'"),
    ],
    ids=["model", "model-in-capitals", "choice", "optimizer"],
)
def test_the_zoos_suggestions_ignore_case_as_config_validations_do(check, hint):
    """The zoo's errors suggest names the way config validation does (one ``close_matches``)."""
    with pytest.raises(ModelConfigError, match=hint):
        check()


# ---- choices: checked when the config resolves, with the same table the model builds with --------------
CHOICES = [
    ("DLRM_tiny", "interaction_op=sum", "interaction_op"),
    ("DCNv2_tiny", "model_structure=serial", "model_structure"),
    ("EDCN_tiny", "bridge_type=gate", "bridge_type"),
    ("DLF_tiny", "implicit_block=mlp", "implicit_block"),
    ("DLF_tiny", "preset=authors", "preset"),
    ("MaskFusion_DNN_tiny", "maskfusion.mask_type=dynamic", "maskfusion.mask_type"),
    ("MaskFusion_DNN_tiny", "numeric_encoder=mlp", "numeric_encoder"),
]


@pytest.mark.parametrize("expid,setting,key", CHOICES, ids=[c[1] for c in CHOICES])
def test_a_bad_choice_is_refused_when_the_config_resolves(expid, setting, key):
    with pytest.raises(CTRBenchError, match=key.replace(".", r"\.")) as err:
        params_of(expid, setting)
    assert "must be one of" in str(err.value)
    params = params_of(expid)
    name, value = key.split(".")[-1], setting.split("=", 1)[1]
    if "." in key:
        params[key.split(".")[0]] = {**(params.get(key.split(".")[0]) or {}), name: value}
    else:
        params[key] = value
    with pytest.raises(ModelConfigError, match=name):
        build(params)


# ---- fuxictr's fit: the zoo's step clips sparse embedding gradients as the trainer does ------------------
@pytest.mark.parametrize("embedding_optimizer", ["sparse_adam", "rowwise_adagrad"])
def test_fuxictr_fit_with_gradient_clipping_steps_a_sparse_embedding_optimizer(tmp_path, embedding_optimizer):
    """``model.fit(..., max_gradient_norm=...)`` (fuxictr's loop, the zoo's ``train_step``) clips the sparse
    gradients of the embedding table (torch's ``clip_grad_norm_`` cannot) and steps both optimisers."""
    fmap = feature_map_from_vocab(VOCAB, 4, numeric=NUMERIC)
    model = get_model_class("DNN")(
        fmap,
        **model_kwargs(
            embedding_optimizer=embedding_optimizer,
            hidden_units=[8],
            embedding_dim=4,
            model_root=str(tmp_path),
            learning_rate=0.1,
        ),
    )
    main, sparse = model.optimizers()
    table = sparse.param_groups[0]["params"][0]
    table_before = table.detach().clone()
    main_params = [p for g in main.param_groups for p in g["params"]]
    main_before = [p.detach().clone() for p in main_params]
    train = [batch(fmap, rows=16, seed=s) for s in range(3)]
    model.fit(train, epochs=1, validation_data=[batch(fmap, rows=16, seed=9)], max_gradient_norm=1e-3)
    assert not torch.equal(table.detach(), table_before)
    assert any(not torch.equal(a, p.detach()) for a, p in zip(main_before, main_params))
