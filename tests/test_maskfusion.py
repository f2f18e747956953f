"""MaskFusion (Liao et al., ICLR 2023): the mechanism, its nine hosts, parameter counts and training.

Parameter counts are checked against the paper's Table 3 sizes for its Criteo-Kaggle
DLRM (full DLRM vocabulary, 26 categorical + 13 numeric fields, d = 16; built on the meta device so
the 540M embedding rows take no memory) and against closed forms for every host x variant.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from benchmark.data.synth import CRITEO_CARDINALITY
from model_zoo import create_model, get_model_class, registry
from model_zoo.base import CTRModel
from model_zoo.errors import ModelConfigError
from model_zoo.maskfusion import DENSE_FIELD, HOSTS, VARIANTS
from model_zoo.maskfusion.layers import CrossFusionController, FusedLinear, MaskFusionLayer, instance_norm
from model_zoo.testing import count_parameters, feature_map_from_vocab, model_kwargs
from tests.conftest import CONFIG
from tests.oracles import (
    controller_param_count,
    fused_mlp_param_count,
    mask_generator_param_count,
    mlp_param_count,
    smooth_l0_steps_to_floor,
)

# DLRM's Criteo-Kaggle vocabulary (33,762,577 ids in all).
CRITEO_DLRM_VOCAB = CRITEO_CARDINALITY  # Kaggle Criteo's per-column distinct values (DLRM's full vocabulary)
NUMERIC = [f"I{i}" for i in range(1, 14)]

# small hosts for the structural tests: DNN widths [32, 16] + output unit everywhere
HOST_KW = {
    "DNN": {"hidden_units": [32, 16]},
    "IPNN": {"hidden_units": [32, 16]},
    "DeepFM": {"dnn_hidden_units": [32, 16]},
    "xDeepFM": {"dnn_hidden_units": [32, 16], "cin_hidden_units": [4, 4]},
    "DCN": {"dnn_hidden_units": [32, 16], "num_cross_layers": 2},
    "DCNv2": {"dnn_hidden_units": [32, 16], "num_cross_layers": 2, "model_structure": "parallel"},
    "AutoIntPlus": {"dnn_hidden_units": [32, 16], "attention_layers": 1, "attention_dim": 8, "num_heads": 2},
    "DLRM": {"top_mlp_units": [32, 16], "bottom_mlp_units": [16, 8]},
    "MaskNet": {"dnn_hidden_units": [32, 16], "parallel_num_blocks": 2, "parallel_block_dim": 8},
}
D = 8
GEN = [16]
VOCAB = {f"C{i}": 30 + i for i in range(5)}


def small_map(numeric=("I1", "I2", "I3")):
    return feature_map_from_vocab(VOCAB, D, numeric=list(numeric))


def build(host, variant="adaptive_dwmf", fmap=None, numeric_encoder="bottom_mlp", seed=0, **over):
    torch.manual_seed(seed)
    mf = dict(VARIANTS[variant], generator_hidden_units=GEN)
    mf.update(over.pop("maskfusion", {}))
    kw = model_kwargs(
        embedding_dim=D, maskfusion=mf, numeric_encoder=numeric_encoder, bottom_mlp_units=[16, D]
    )
    kw.update(HOST_KW[host])
    kw.update(over)
    return get_model_class(f"MaskFusion_{host}")(fmap or small_map(), **kw)


def batch_of(size=6, seed=1):
    gen = torch.Generator().manual_seed(seed)
    batch = {name: torch.randint(1, 30, (size,), generator=gen) for name in VOCAB}
    batch.update({name: torch.randn(size, generator=gen) for name in ("I1", "I2", "I3")})
    batch["label"] = torch.randint(0, 2, (size,), generator=gen).float()
    return batch


# ---- the layer ---------------------------------------------------------------------------------


def test_instance_norm_per_field_and_mask_order():
    emb = torch.randn(4, 5, 8) * 3 + 1
    out = instance_norm(emb, 1e-8)
    assert torch.allclose(out.mean(-1), torch.zeros(4, 5), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(4, 5), atol=1e-4)
    # a feature-wise mask applied before IN is cancelled by it: the mask must come after IN
    mask = torch.rand(4, 5, 1) + 0.1
    assert torch.allclose(instance_norm(mask * emb, 1e-8), out, atol=1e-4)
    assert not torch.allclose(mask * out, out, atol=1e-2)


@pytest.mark.parametrize("granularity,shape", [("feature", (6, 3, 4)), ("dimension", (6, 3, 4, 5))])
def test_adaptive_masks_sum_to_one_across_positions_and_depend_on_the_instance(granularity, shape):
    torch.manual_seed(0)
    layer = MaskFusionLayer(4, 5, 3, "adaptive", granularity, generator_hidden_units=[16])
    layer.reset()
    layer.add_embedding(torch.randn(6, 4, 5))
    fused = [layer.fused(t) for t in range(3)]
    assert all(f.shape == (6, 20) for f in fused)
    masks = layer.masks
    assert masks.shape == shape
    assert torch.allclose(masks.sum(dim=1), torch.ones_like(masks.sum(dim=1)), atol=1e-6)
    assert not torch.allclose(masks[0], masks[1])
    # F_t = m_t * IN(E): the three fused inputs add up to IN(E) because the masks sum to one
    total = sum(fused).reshape(6, 4, 5)
    assert torch.allclose(total, instance_norm(layer.embeddings()), atol=1e-5)


def test_static_mask_is_shared_and_starts_uniform():
    layer = MaskFusionLayer(4, 5, 3, "static", "feature")
    layer.reset()
    layer.add_embedding(torch.randn(6, 20))  # flattened input is accepted too
    layer.fused(0)
    assert layer.masks.shape == (6, 3, 4)
    assert torch.allclose(layer.masks, torch.full((6, 3, 4), 1 / 3))
    with torch.no_grad():
        layer.static_mask.beta.normal_()
    layer.reset()
    layer.add_embedding(torch.randn(6, 4, 5))
    layer.fused(0)
    assert torch.allclose(layer.masks[0], layer.masks[5]) and not torch.allclose(
        layer.masks[0, 0], layer.masks[0, 1]
    )


def test_fusion_only_feeds_the_normalised_embedding_everywhere():
    layer = MaskFusionLayer(4, 5, 2, "none")
    layer.reset()
    emb = torch.randn(3, 4, 5)
    layer.add_embedding(emb)
    assert torch.equal(layer.fused(0), layer.fused(1))
    assert torch.allclose(layer.fused(1), instance_norm(emb).flatten(1))
    assert layer.masks is None


@pytest.mark.parametrize("mode", ["stacked", "parallel"])
def test_dcnv2_controller_is_the_crossnetv2_recurrence(mode):
    torch.manual_seed(0)
    ctrl = CrossFusionController(12, 3, mode)
    x0 = torch.randn(5, 12)
    outs = ctrl(x0)
    layers = ctrl.crossnet.cross_layers
    x = x0
    for t in range(3):
        prev = x if mode == "stacked" else x0
        x = prev + x0 * layers[t](prev)
        assert torch.allclose(outs[t], x, atol=1e-6)
    if mode == "stacked":
        assert torch.allclose(outs[-1], ctrl.crossnet(x0), atol=1e-6)


def test_parameter_count_oracles_from_the_appendix():
    """Component counts at n = 27, d = 16 (DLRM's Criteo: 26 sparse fields + the dense vector), host DNN
    [512, 256, 1] and generators [512, 256] (App. A): fused layers, generators, static masks, the DCNv2-type
    controller (App. I.2) and the bottom MLP."""
    n, d, nd = 27, 16, 27 * 16
    assert fused_mlp_param_count(367, [512, 256, 1], 0) == 320_001
    assert fused_mlp_param_count(367, [512, 256, 1], nd) == 652_209
    assert mask_generator_param_count(n, d, "feature") == 359_963
    assert mask_generator_param_count(n, d, "dimension") == 464_048
    assert controller_param_count(n, d, 3, "adaptive", "feature") == 1_079_889
    assert controller_param_count(n, d, 3, "adaptive", "dimension") == 1_392_144
    assert controller_param_count(n, d, 3, "static", "feature") == 81
    assert controller_param_count(n, d, 3, "static", "dimension") == 1_296
    assert controller_param_count(n, d, 3, "dcnv2") == 561_168
    assert mlp_param_count(13, [512, 256, 64, 16]) == 155_984


# ---- the DLRM Criteo-Kaggle model of the paper (Tables 3/4) ---------------------------------------


def _criteo(d):
    return feature_map_from_vocab(
        {f"C{i + 1}": v for i, v in enumerate(CRITEO_DLRM_VOCAB)}, d, numeric=NUMERIC
    )


def _meta_count(monkeypatch, host, variant, d=16, **kw):
    monkeypatch.setattr(CTRModel, "model_to_device", lambda self: None)
    with torch.device("meta"):
        model = get_model_class(f"MaskFusion_{host}")(
            _criteo(d),
            **model_kwargs(
                embedding_dim=d,
                maskfusion=VARIANTS[variant],
                numeric_encoder="bottom_mlp",
                bottom_mlp_units=[512, 256, 64, d],
                optimizer="adagrad",
                **kw,
            ),
        )
    return count_parameters(model)


@pytest.mark.parametrize(
    "variant,expected",
    [
        ("baseline", 540_677_217),
        ("fusion", 541_009_425),
        ("static_fwm", 541_009_506),
        ("adaptive_fwmf", 542_089_314),
        ("adaptive_dwmf", 542_401_569),
        ("dcnv2_dwmf", 541_570_593),
        ("smoothl0_fwmf", 542_089_746),
    ],
)
def test_dlrm_criteo_counts_match_the_spec(monkeypatch, variant, expected):
    assert sum(CRITEO_DLRM_VOCAB) == 33_762_577
    # 540,677,217 = 33,762,577 x 16 + bottom 155,984 + top 320,001 (paper: 540.68M / 540.67M)
    assert _meta_count(monkeypatch, "DLRM", variant, top_mlp_units=[512, 256]) == expected


def test_paper_table_counts_under_the_every_layer_reading(monkeypatch):
    """Fits of the paper's Tables 3/4 (paper values in the comments)."""
    dcn = {"num_cross_layers": 3, "dnn_hidden_units": [512, 256]}
    assert round(_meta_count(monkeypatch, "DCN", "adaptive_dwmf", d=8, **dcn) / 1e6, 2) == 271.56  # 271.57M
    two = {"num_cross_layers": 3, "dnn_hidden_units": [512]}
    assert round(_meta_count(monkeypatch, "DCN", "adaptive_fwmf", **two) / 1e6, 2) == 541.52  # 541.52M
    assert (
        round(_meta_count(monkeypatch, "DLRM", "adaptive_dwmf", d=8, top_mlp_units=[512, 256]) / 1e6, 2)
        == 271.63
    )  # 271.69M
    assert round(_meta_count(monkeypatch, "DLRM", "adaptive_fwmf", top_mlp_units=[256]) / 1e6, 2) == 541.28


# ---- every host ------------------------------------------------------------------------------------


def test_every_host_is_registered():
    names = registry()
    for host in HOSTS:
        assert f"MaskFusion_{host}" in names and host in names


def _dnn_units(host):
    """The fused DNN's layer widths incl. the output unit (DCN/DCNv2: the head fc on [cross ; h])."""
    spec = HOST_KW[host]
    return (spec.get("hidden_units") or spec.get("dnn_hidden_units") or spec.get("top_mlp_units")) + [1]


@pytest.mark.parametrize("host", list(HOSTS))
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "baseline"])
def test_added_parameters_follow_the_closed_form(host, variant):
    base = count_parameters(build(host, "baseline"))
    model = build(host, variant)
    n = len(VOCAB) + 1  # five categorical fields + the dense field
    nd = n * D
    layers = [m for m in model.modules() if isinstance(m, FusedLinear)]
    assert len(layers) == 3 == model.mf_positions
    widened = sum(nd * m.out_features for m in layers)
    assert [m.out_features for m in layers] == _dnn_units(host)
    cfg = VARIANTS[variant]
    extra = controller_param_count(
        n,
        D,
        3,
        cfg["mask_type"],
        cfg.get("granularity", "dimension"),
        GEN,
        smooth_l0=bool(cfg.get("smooth_l0")),
    )
    assert count_parameters(model) - base == widened + extra


@pytest.mark.parametrize("host", list(HOSTS))
def test_disabled_is_the_host_and_zero_fused_weights_give_the_host_back(host):
    fmap = small_map()
    host_kw = model_kwargs(embedding_dim=D, **HOST_KW[host])
    torch.manual_seed(0)
    plain = get_model_class(host)(fmap, **host_kw)
    plain.eval()
    batch = batch_of()
    expected = plain(batch)["y_pred"]
    # maskfusion.enabled: false (per-field numerics) is the host itself
    off = build(host, "baseline", fmap=fmap, numeric_encoder="per_field")
    off.load_state_dict(plain.state_dict())
    off.eval()
    assert torch.allclose(off(batch)["y_pred"], expected, atol=1e-6)
    # fused model whose fused columns are zero computes exactly the host
    on = build(host, "adaptive_dwmf", fmap=fmap, numeric_encoder="per_field")
    state = plain.state_dict()
    own = on.state_dict()
    for key, value in own.items():
        if key.startswith("mask_fusion."):
            continue
        src = state[key]
        if value.shape != src.shape:  # a FusedLinear weight: [F_t columns ; host columns]
            src = torch.cat([torch.zeros(value.shape[0], value.shape[1] - src.shape[1]), src], dim=1)
        own[key] = src
    on.load_state_dict(own)
    on.eval()
    out = on(batch)
    assert torch.allclose(out["y_pred"], expected, atol=1e-6)
    fields = len(VOCAB) + (1 if host == "DLRM" else 3)  # DLRM's own bottom MLP makes one dense field
    assert out["fusion_masks"].shape == (6, 3, fields, D)


@pytest.mark.parametrize("host", list(HOSTS))
def test_forward_backward_and_probabilities(host):
    for variant in VARIANTS:
        model = build(host, variant)
        out = model(batch_of())
        assert out["y_pred"].shape == (6, 1)
        assert bool(((out["y_pred"] > 0) & (out["y_pred"] < 1)).all())
        loss = model.compute_loss(out, model.get_labels(batch_of()))
        loss.backward()
        if model.mask_fusion is not None:  # generators / beta / cross layers / gate and the fused layers
            fused = [m.weight for m in model.modules() if isinstance(m, FusedLinear)]
            grads = [p.grad for p in list(model.mask_fusion.parameters()) + fused]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert all(g.abs().sum() > 0 for g in grads), (host, variant)


def test_bottom_mlp_turns_the_numerics_into_one_field():
    model = build("DeepFM", "baseline")
    assert model.feature_map.num_fields == len(VOCAB) + 1
    assert DENSE_FIELD in model.feature_map.features and "I1" not in model.feature_map.features
    emb = model.embedding_layer.embedding_layer.feature_encoders[DENSE_FIELD]
    assert [m.out_features for m in emb.modules() if isinstance(m, nn.Linear)] == [16, D]
    lr = model.lr_layer.embedding_layer.embedding_layer.feature_encoders[DENSE_FIELD]
    assert isinstance(lr, nn.Linear) and lr.weight.shape == (1, 3)  # first order on raw numerics
    # bottom MLP 3-16-8 + LR weights 3; the per-field encoder has 3 x (8 + 1) instead
    per_field = build("DeepFM", "baseline", numeric_encoder="per_field")
    diff = count_parameters(model) - count_parameters(per_field)
    dnn_in = (len(VOCAB) + 1) * D - (len(VOCAB) + 3) * D
    assert diff == mlp_param_count(3, [16, D]) - 3 * D + dnn_in * 32


def test_fuse_first_layer_off_and_head_handling():
    model = build("DCN", "adaptive_fwmf", maskfusion={"fuse_first_layer": False})
    assert model.mf_positions == 2
    assert isinstance(model.fc, FusedLinear) and not isinstance(model.dnn.mlp[0], FusedLinear)
    deep = build("DeepFM", "adaptive_fwmf")
    assert isinstance(deep.dnn.mlp[-1], FusedLinear) and deep.dnn.mlp[-1].out_features == 1


def test_config_errors_name_the_key():
    with pytest.raises(ModelConfigError, match="maskfusion.mask_type"):
        build("DNN", "adaptive_dwmf", maskfusion={"mask_type": "soft"})
    with pytest.raises(ModelConfigError, match="unknown key"):
        build("DNN", "adaptive_dwmf", maskfusion={"granularty": "feature"})
    with pytest.raises(ModelConfigError, match="bottom_mlp_units"):
        build("DNN", "baseline", bottom_mlp_units=[16, 4])
    with pytest.raises(ModelConfigError, match="DNN"):
        build("xDeepFM", "adaptive_dwmf", dnn_hidden_units=[])


# ---- SmoothL0 ------------------------------------------------------------------------------------------


def test_fuxictr_fit_evaluate_predict_train_the_smoothl0_gate(tmp_path):
    """A FuxiCTR user's ``model.fit(train_gen, validation_data=...)`` steps the gate's own optimiser and
    the eps schedule (fuxictr's own train_step steps ``model.optimizer`` only); evaluate and predict
    read the trained model."""
    model = build(
        "DNN",
        "smoothl0_fwmf",
        maskfusion={"smooth_l0": {"enabled": True, "lambda": 0.5}},
        model_root=str(tmp_path),
        optimizer="adagrad",
        learning_rate=0.01,
    )
    gate = model.smooth_l0_gate
    train = [batch_of(size=16, seed=s) for s in range(5)]
    valid = [batch_of(size=16, seed=100 + s) for s in range(2)]
    x0 = gate.x.detach().clone()
    main_before = [p.detach().clone() for p in model.main_parameters()]
    model.fit(train, epochs=2, validation_data=valid, max_gradient_norm=10.0)
    assert gate.eps.item() == pytest.approx(0.1 * 0.999**10)  # on_train_step_end ran every step
    assert not torch.equal(gate.x.detach(), x0)  # the aux SGD moved the gate
    assert any(not torch.equal(a, b.detach()) for a, b in zip(main_before, model.main_parameters()))
    logs = model.evaluate(valid)
    assert set(logs) >= {"AUC", "logloss"}
    assert model.predict(valid).shape == (32,)


def test_smoothl0_gate_optimiser_schedule_and_pruning():
    from benchmark.train import Trainer

    model = build(
        "DCN",
        "smoothl0_fwmf",
        maskfusion={"smooth_l0": {"enabled": True, "lambda": 0.5}},
        optimizer="adagrad",
        learning_rate=0.01,
    )
    gate = model.smooth_l0_gate
    main = {id(p) for group in model.optimizer.param_groups for p in group["params"]}
    assert id(gate.x) not in main and len(main) == len(list(model.parameters())) - 1
    assert type(model.optimizer).__name__ == "Adagrad"
    (sgd,) = model.aux_optimizers
    assert type(sgd).__name__ == "SGD" and sgd.param_groups[0]["lr"] == 0.006
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["params"][0] is gate.x
    x_start = gate.x.detach().clone()
    assert gate.eps.item() == pytest.approx(0.1) and torch.allclose(
        x_start, torch.full_like(x_start, 0.1**0.5)
    )
    trainer = Trainer(model, {"max_gradient_norm": 10.0, "verbose": 0})
    model.train()
    for step in range(3):
        trainer.train_step(batch_of(seed=step))
        trainer.state.total_steps += 1
    assert gate.eps.item() == pytest.approx(0.1 * 0.999**3)
    assert not torch.equal(gate.x.detach(), x_start)  # SGD moved the gate
    assert smooth_l0_steps_to_floor() == 5296  # 0.1 * 0.999^k <= 5e-4
    for _ in range(6000):
        gate.step()
    assert gate.eps.item() == pytest.approx(5e-4)
    # prune a quarter of the fused dimensions: exactly zero at evaluation, sparsity = pruned / (n d)
    with torch.no_grad():
        gate.x[:, : D // 4 * 1].zero_()
        gate.x[:, D // 4 : D // 2].fill_(1e-5)  # g = 2e-7 < 1e-6: pruned as well
    model.eval()
    assert model.fusion_sparsity() == pytest.approx(0.5)
    layer = model.mask_fusion
    layer.reset()
    layer.add_embedding(torch.randn(2, layer.num_fields, D))
    fused = layer.fused(0).reshape(2, layer.num_fields, D)
    assert torch.all(fused[:, :, : D // 2] == 0) and torch.all(fused[:, :, D // 2 :] != 0)


@pytest.mark.parametrize(
    "smooth_l0, x_start",
    [
        ({}, 0.1**0.5),  # default: x = sqrt(eps_init), g = 1/2
        ({"eps_init": 0.04}, 0.2),
        ({"x_init": 1.0}, 1.0),  # the open start, as an explicit choice
    ],
)
def test_smoothl0_gate_starts_undecided(smooth_l0, x_start):
    """The gate starts at g = 1/2, where dg/dx is ~10x its value at x = 1 (g = 0.91): there the data's
    gradient can hold a dimension against the penalty, so the pruned share is partial; from x = 1 the
    penalty that moves any gate moves all of them alike (docs/decisions.md, MaskFusion)."""
    model = build("DCN", "smoothl0_fwmf", maskfusion={"smooth_l0": {"enabled": True, **smooth_l0}})
    gate = model.smooth_l0_gate
    assert torch.allclose(gate.x.detach(), torch.full_like(gate.x, x_start))
    if not smooth_l0:
        assert torch.allclose(gate.soft_gate(), torch.full_like(gate.x, 0.5))
        x = torch.tensor([0.1**0.5, 1.0], requires_grad=True)
        (x * x / (x * x + 0.1)).sum().backward()
        assert x.grad[0] > 9 * x.grad[1]


def test_smoothl0_calibration_script_penalty_moves_the_gates(data_root):
    """scripts/calibrate_smoothl0.py trains the expid at each lambda: a larger lambda pulls x lower."""
    import importlib.util

    path = os.path.join(os.path.dirname(CONFIG), "scripts", "calibrate_smoothl0.py")
    spec = importlib.util.spec_from_file_location("calibrate_smoothl0", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sets = ["dataset_id=tiny_cat", "batch_size=64", f"model_root={data_root}/checkpoints"]
    runs = [
        mod.run_lambda("MaskFusion_DCN_smoothl0_synth", lam, 20, sets, CONFIG, 10, data_root)
        for lam in (0.0, 50.0)
    ]
    assert [len(r["trail"]) for r in runs] == [2, 2] and all(0.0 <= r["sparsity"] <= 1.0 for r in runs)
    assert runs[1]["mean_abs_x"] < runs[0]["mean_abs_x"] - 0.01
    assert 0.0 <= runs[0]["AUC"] <= 1.0


# ---- training on the tiny fixture -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_batches(load):
    from benchmark.data import loader as loader_mod
    from benchmark.runner import prepare_data

    params = load("MaskFusion_DCN_tiny")
    directory, fmap = prepare_data(params, quiet=True)
    loaders = loader_mod.make_loaders(fmap, directory, params, splits=("train",))
    batches = []
    for batch in loaders["train"]:
        batches.append(batch)
        if len(batches) == 2:
            break
    return params, fmap, batches


@pytest.mark.parametrize("host", list(HOSTS))
def test_every_variant_trains_on_the_tiny_fixture(load, tiny_batches, host):
    from benchmark.train import Trainer

    _, fmap, batches = tiny_batches
    for variant, block in VARIANTS.items():
        params = load(f"MaskFusion_{host}_tiny")
        params["maskfusion"] = dict(block, generator_hidden_units=[16])
        torch.manual_seed(0)
        model = create_model(params, fmap)
        trainer = Trainer(model, params)
        model.train()
        before = [p.detach().clone() for p in model.parameters()]
        losses = [float(trainer.train_step(batch)) for batch in batches]
        assert all(math.isfinite(x) for x in losses), (host, variant, losses)
        moved = sum(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
        assert moved > 0
        model.eval()
        with torch.no_grad():
            y = model(batches[0])["y_pred"]
        assert bool(((y >= 0) & (y <= 1)).all())
