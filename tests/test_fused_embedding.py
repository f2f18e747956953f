"""The fused embedding table is fuxictr's per-field ``FeatureEmbedding``, numerically.

Layer level: the same initial values (construction and ``reset_parameters``), forward values, gradients and
regularisation; checkpoints in fuxictr's per-field key layout both ways; shared, sequence, pretrained,
frozen and other-width fields; the first-order LR on the same fused path. Model level: for one model of
every family (and DeepFM's LR), 50 float64 training steps (fuxictr's step: both regularisers, gradient
clipping that scales, Adam) from one seed agree with the per-field model to 1e-12 in the weights and the
losses (they are bit-identical on a CPU: the fused regulariser and clip take their norms per field).
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from fuxictr.pytorch.layers import FeatureEmbedding, LogisticRegression
from torch import nn

from benchmark.config import list_expids, load_config
from model_zoo import get_model_class
from model_zoo.base import clip_grad_norm
from model_zoo.layers.embedding import FieldLogisticRegression, FusedFeatureEmbedding, field_embedding_layer
from model_zoo.testing import feature_map_from_vocab, model_kwargs
from tests.conftest import CONFIG
from tests.test_zoo_pinned import NOT_MODEL_KEYS

VOCAB = {f"c{i}": 7 + 3 * i for i in range(5)}


def fmap(numeric=("n0", "n1"), sequence=None, dim=8, **extra_specs):
    fm = feature_map_from_vocab(VOCAB, dim, numeric=list(numeric), sequence=sequence)
    for name, spec in extra_specs.items():
        fm.features[name].update(spec)
    return fm


def inputs(fm, rows=24, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    X = {}
    for name, spec in fm.features.items():
        if spec["type"] == "numeric":
            X[name] = torch.rand(rows, generator=g, dtype=dtype)
        elif spec["type"] == "sequence":
            X[name] = torch.randint(0, spec["vocab_size"], (rows, spec["max_len"]), generator=g)
        else:  # ids from 0: padding rows are looked up too
            X[name] = torch.randint(0, spec["vocab_size"], (rows,), generator=g)
    return X


class Host(nn.Module):
    """A layer inside a model-like module, initialised as ``BaseModel.reset_parameters`` does."""

    def __init__(self, layer):
        super().__init__()
        self.before = nn.Linear(3, 3)
        self.embedding_layer = layer
        self.after = nn.Linear(3, 3)

    def reset(self):
        def default(m):
            if type(m) in [nn.Linear, nn.Conv1d]:
                nn.init.xavier_normal_(m.weight)

        def custom(m):
            if hasattr(m, "init_weights"):
                m.init_weights()

        self.apply(default)
        self.apply(custom)


def pair(fm, dim=8, **kwargs):
    torch.manual_seed(1)
    np.random.seed(1)  # PretrainedEmbedding draws from numpy
    a = Host(FeatureEmbedding(fm, dim, **kwargs))
    a.reset()
    torch.manual_seed(1)
    np.random.seed(1)  # PretrainedEmbedding draws from numpy
    b = Host(FusedFeatureEmbedding(fm, dim, **kwargs))
    b.reset()
    return a, b


def assert_same_state(a, b, tol=0.0):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k].shape == sb[k].shape, k
        assert (sa[k].double() - sb[k].double()).abs().max() <= tol, k


CASES = {
    "categorical+numeric": dict(),
    "categorical first": dict(numeric=()),
    "shared table and sequence": dict(sequence={"s": 9}, s={"share_embedding": "c1"}),
    "sequence own table": dict(sequence={"s": 9}),
    "other width field": dict(c2={"embedding_dim": 4}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_is_fuxictrs_feature_embedding(case):
    spec = dict(CASES[case])
    fm = fmap(**spec)
    if case == "categorical first":  # numeric fields after the categorical ones: the stacking reorders
        fm.features["n9"] = {"source": "", "type": "numeric"}
    a, b = pair(fm)
    assert_same_state(a, b)  # construction and reset_parameters draw the same numbers
    X = inputs(fm)
    if case == "other width field":
        with pytest.raises(RuntimeError):  # fuxictr cannot stack fields of two widths either
            a.embedding_layer(X)
        flat_a, flat_b = a.embedding_layer(X, flatten_emb=True), b.embedding_layer(X, flatten_emb=True)
        assert torch.equal(flat_a, flat_b)
        return
    ea, eb = a.embedding_layer(X), b.embedding_layer(X)
    assert torch.equal(ea, eb)
    assert torch.equal(a.embedding_layer(X, flatten_emb=True), b.embedding_layer(X, flatten_emb=True))
    weights = torch.randn(ea.shape, generator=torch.Generator().manual_seed(2))
    (ea * weights).sum().backward()
    (eb * weights).sum().backward()
    grads_a = {n: p.grad for n, p in a.named_parameters() if p.grad is not None}
    per_field_b = b.state_dict()  # the fused gradients in the per-field layout, through the same hook
    with torch.no_grad():
        for n, p in b.named_parameters():
            p.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
    per_field_grad_b = b.state_dict()
    numeric = {
        f"embedding_layer.embedding_layer.embedding_layers.{f}.weight" for f in b.embedding_layer._numeric
    }
    for name, g in grads_a.items():
        if name in numeric:  # Linear(1, d)'s backward is a GEMM over the batch, the fused one a sum
            assert torch.allclose(g, per_field_grad_b[name], rtol=0, atol=1e-6 * float(g.abs().max())), name
        else:
            assert torch.equal(g, per_field_grad_b[name]), name
    assert per_field_b.keys() == per_field_grad_b.keys()


def test_padding_rows_get_no_lookup_gradient():
    fm = fmap()
    _, b = pair(fm)
    X = {k: torch.zeros_like(v) for k, v in inputs(fm).items()}  # every id is the padding id
    b.embedding_layer(X).sum().backward()
    fused = b.embedding_layer.embedding_layer.fused_weight
    assert fused.grad.abs().sum() == 0
    assert torch.equal(fused[b.embedding_layer.pad_rows], torch.zeros(len(VOCAB), 8))


def test_feature_filters_and_missing_fields_take_the_per_field_path():
    fm = fmap()
    fm.features["c3"]["source"] = "item"
    a, b = pair(fm)
    X = inputs(fm)
    for kwargs in ({"feature_source": ["item"]}, {"feature_type": ["numeric"]}):
        assert torch.equal(a.embedding_layer(X, **kwargs), b.embedding_layer(X, **kwargs))
    partial = {k: v for k, v in X.items() if k != "c1"}
    assert torch.equal(a.embedding_layer(partial), b.embedding_layer(partial))


@pytest.mark.parametrize("reg", ["l2(1e-2)", "l1(1e-2)", "l1_l2(1e-2, 3e-2)"])
def test_regularisation_is_fuxictrs_per_table_sum(reg):
    """The zoo's regulariser over the fused layer is fuxictr's ``BaseModel.regularization_loss`` over the
    per-field one: the per-table (lambda/p)*||W||_p^p summed, the same gradients to the last bit (a table
    of zeros included: torch's norm backward masks its 0/0)."""
    from fuxictr.pytorch.models import BaseModel

    from model_zoo.layers.embedding import regularization_loss

    fm = fmap(sequence={"s": 9})
    value, grads = {}, {}
    for fused in (False, True):
        torch.manual_seed(3)
        model = BaseModel(fm, **model_kwargs(embedding_regularizer=reg, net_regularizer=1e-3))
        model.embedding_layer = Host(field_embedding_layer(fm, 8, fused=fused))
        model.reset_parameters()
        model.double()
        with torch.no_grad():  # c3's table all zeros (through the checkpoint layout)
            state = model.state_dict()
            state["embedding_layer.embedding_layer.embedding_layer.embedding_layers.c3.weight"].zero_()
            model.load_state_dict(state)
        if fused:
            value[fused] = regularization_loss(model, reg, 1e-3)
        else:
            value[fused] = model.regularization_loss()
        value[fused].backward()
        with torch.no_grad():  # gradients in the per-field layout, through the checkpoint hook
            for p in model.parameters():
                p.copy_(p.grad)
        grads[fused] = model.state_dict()
    assert abs(value[True].item() - value[False].item()) <= 1e-15 * value[False].item()
    for k, g in grads[False].items():
        assert torch.equal(g, grads[True][k]), k  # the per-field gradients to the last bit


def test_checkpoints_move_both_ways_in_fuxictrs_layout(tmp_path):
    fm = fmap(sequence={"s": 9}, s={"share_embedding": "c1"})
    a, b = pair(fm)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn_like(p))
    keys = set(b.state_dict())
    assert "embedding_layer.embedding_layer.embedding_layers.c0.weight" in keys
    assert not any("fused" in k or "numeric_weight" in k for k in keys)
    torch.save(a.state_dict(), tmp_path / "per_field.pt")
    b.load_state_dict(torch.load(tmp_path / "per_field.pt", weights_only=True))
    assert_same_state(a, b)
    X = inputs(fm)
    assert torch.equal(a.embedding_layer(X), b.embedding_layer(X))
    with torch.no_grad():
        for p in b.parameters():
            p.mul_(2)
    torch.save(b.state_dict(), tmp_path / "fused.pt")
    a.load_state_dict(torch.load(tmp_path / "fused.pt", weights_only=True))
    assert torch.equal(a.embedding_layer(X), b.embedding_layer(X))
    # the fused layout itself loads too (a state dict taken without the hook's conversion)
    inner = b.embedding_layer.embedding_layer
    raw = {"fused_weight": inner.fused_weight.detach().clone(), "numeric_weight": inner.numeric_weight * 1}
    c = FusedFeatureEmbedding(fm, 8)
    c.embedding_layer.load_state_dict(raw)
    assert torch.equal(c(X), b.embedding_layer(X))


def test_model_moves_and_copies_keep_the_views_out_of_the_way():
    import copy

    fm = fmap()
    _, b = pair(fm)
    c = copy.deepcopy(b).double()
    c.reset()  # views are rebuilt on the copied, converted table
    assert c.embedding_layer.embedding_layer.fused_weight.dtype == torch.float64
    assert not any("weight" in vars(m) for m in c.embedding_layer.embedding_layer.embedding_layers.values())


def test_pretrained_and_frozen_fields_stay_per_field(tmp_path):
    fm = fmap()
    fm.data_dir = str(tmp_path)
    vocab = {
        name: {"__PAD__": 0, **{f"v{i}": i for i in range(1, spec["vocab_size"])}}
        for name, spec in fm.features.items()
        if spec["type"] == "categorical"
    }
    (tmp_path / "feature_vocab.json").write_text(json.dumps(vocab))
    with h5py.File(tmp_path / "pre.h5", "w") as fh:
        fh.create_dataset("key", data=np.array([b"v1", b"v2", b"v3"]))
        fh.create_dataset("value", data=np.random.RandomState(0).randn(3, 8))
    for name, usage, freeze in (("c0", "init", True), ("c2", "sum", False)):
        fm.features[name].update(
            pretrained_emb="pre.h5",
            pretrain_dim=8,
            pretrain_usage=usage,
            freeze_emb=freeze,
            oov_idx=fm.features[name]["vocab_size"] - 1,
        )
    a, b = pair(fm)
    assert_same_state(a, b)
    fused_fields = set(b.embedding_layer._table_of)
    assert "c0" not in fused_fields and "c2" not in fused_fields and "c1" in fused_fields
    frozen = b.embedding_layer.embedding_layer.embedding_layers["c0"].pretrain_embedding.weight
    assert not frozen.requires_grad
    X = inputs(fm)
    assert torch.equal(a.embedding_layer(X), b.embedding_layer(X))


@pytest.mark.parametrize("case", ["categorical+numeric", "shared table and sequence"])
def test_first_order_term_is_fuxictrs_logistic_regression_on_one_fused_table(case, tmp_path):
    """The zoo's LR reads a 1-wide table from the factory: fuxictr's draws, forward and checkpoint keys."""
    fm = fmap(**CASES[case])
    torch.manual_seed(1)
    a = Host(LogisticRegression(fm, use_bias=True))
    a.reset()
    torch.manual_seed(1)
    table = field_embedding_layer(fm, 1, use_pretrain=False, use_sharing=False)
    b = Host(FieldLogisticRegression(table, use_bias=True))
    b.reset()
    assert isinstance(b.embedding_layer, LogisticRegression)  # what the TF4CTR wrappers look for
    first = [next(iter(h.embedding_layer.named_parameters()))[0] for h in (a, b)]
    assert first == ["bias"] * 2  # fuxictr's parameter order (the clip norm's, Adam's)
    assert_same_state(a, b)
    X = inputs(fm)
    with torch.no_grad():
        a.embedding_layer.bias.fill_(0.25)
        b.embedding_layer.bias.fill_(0.25)
    assert torch.equal(a.embedding_layer(X), b.embedding_layer(X))
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn_like(p))
    torch.save(a.state_dict(), tmp_path / "per_field.pt")
    b.load_state_dict(torch.load(tmp_path / "per_field.pt", weights_only=True))
    assert torch.equal(a.embedding_layer(X), b.embedding_layer(X))


@pytest.mark.parametrize("model", ["DeepFM", "WideDeep", "FM"])
def test_models_with_a_first_order_term_hold_every_table_in_the_fused_parameters(model):
    fm = fmap()
    net = build_model(model, True, fm, torch.float32)
    per_field = [n for n, p in net.named_parameters() if ".embedding_layers." in n]
    assert not per_field  # every table's weights are in fused_weight / numeric_weight
    lr = net.lr_layer.embedding_layer
    assert isinstance(lr, FusedFeatureEmbedding) and lr.embedding_layer.fused_weight.shape[1] == 1
    assert "lr_layer.embedding_layer.embedding_layer.embedding_layers.c0.weight" in net.state_dict()


# ---- whole models: one per family, 50 steps in float64 ---------------------------------------------
# family -> (model, settings). Every step is fuxictr's (both regularisers, gradient clipping at a norm the
# runs exceed, Adam); the fused model's regulariser and clip norm are taken per field in the per-field
# model's order, so nothing differs in the last bit, which Adam would amplify into lr-sized steps of the
# weights that feed a batch or layer norm.
FAMILIES = {
    "baselines": ("DCNv2", {}),
    "baselines, first-order LR": ("DeepFM", {}),
    "ibnet": ("IBNet", {}),
    "tf4ctr": ("TF4CTR", {}),
    "dlf": ("DLF", {}),
    "sfg": ("DCNv2_GEN", {}),
    "maskfusion": ("MaskFusion_DCNv2", {}),
}


def expid_of(model: str) -> str:
    expids = list_expids(CONFIG)
    tiny = f"{model}_tiny"
    if tiny in expids:
        return tiny
    for expid in sorted(expids):
        if not expid.startswith("_") and load_config(CONFIG, expid, [], "/nonexistent").get("model") == model:
            return expid
    raise LookupError(model)


def build_model(model: str, fused: bool, fm, dtype, **over):
    params = load_config(CONFIG, expid_of(model), ["verbose=0"], "/nonexistent")
    kwargs = {k: v for k, v in params.items() if k not in NOT_MODEL_KEYS}
    kwargs.update(
        gpu=-1,
        verbose=0,
        model_root="/nonexistent",
        embedding_regularizer=1e-2,
        net_regularizer=1e-3,
        fused_embedding=fused,
        **over,
    )
    torch.manual_seed(3)
    return get_model_class(params["model"])(fm, **kwargs).to(dtype)


def train_steps(model, fm, dtype, steps=50, rows=32, max_norm=0.1):
    """fuxictr's train_step (zero, forward, loss with regularisers, backward, clip, step); the losses and
    how many steps the clip scaled."""
    torch.manual_seed(5)
    model.train()
    losses, clipped = [], 0
    for step in range(steps):
        X = inputs(fm, rows=rows, seed=100 + step, dtype=dtype)
        X["label"] = torch.randint(0, 2, (rows,), generator=torch.Generator().manual_seed(step)).to(dtype)
        for opt in model.optimizers():
            opt.zero_grad()
        loss = model.compute_loss(model(X), model.get_labels(X).to(dtype))
        loss.backward()
        clipped += bool(nn.utils.get_total_norm([p.grad for p in model.parameters()]) > max_norm)
        clip_grad_norm(model, max_norm)
        for opt in model.optimizers():
            opt.step()
        model.on_train_step_end(step)
        losses.append(loss.item())
    return losses, clipped


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fifty_steps_match_the_per_field_model(family):
    model, over = FAMILIES[family]
    fm = fmap(numeric=())  # fuxictr's numeric path casts inputs to float32, so float64 runs have none
    per_field, fused = (
        build_model(model, False, fm, torch.float64, **over),
        build_model(model, True, fm, torch.float64, **over),
    )
    assert any(isinstance(m, FusedFeatureEmbedding) for m in fused.modules())
    assert not any(isinstance(m, FusedFeatureEmbedding) for m in per_field.modules())
    assert all(p.dtype == torch.float64 for p in fused.parameters())
    assert_same_state(per_field, fused)
    (la, clipped), (lb, _) = train_steps(per_field, fm, torch.float64), train_steps(fused, fm, torch.float64)
    assert clipped > 0  # the clip's norm is exercised
    assert max(abs(x - y) for x, y in zip(la, lb)) <= 1e-12
    assert_same_state(per_field, fused, tol=1e-12)
    assert la[0] != la[-1]  # it trained
