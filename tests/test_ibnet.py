"""IBNet: parameter counts against the authors' logs, the mask, IBCL, Mice, variants and the framework."""

import math

import pytest
import torch
import torch.nn.functional as F

from model_zoo import registry
from model_zoo.ibnet import IBNet, IBNetFramework
from model_zoo.ibnet.contrastive import ibcl_bounds, ibcl_loss
from model_zoo.ibnet.masks import MaskAugmentation, RelaxedBernoulliMask, fill_mask
from model_zoo.layers.activations import Mice
from model_zoo.testing import count_parameters, feature_map_from_vocab, model_kwargs
from tests.oracles import ibnet_branch_param_count, mlp_param_count

# Per-field vocab sizes of the authors' Table IV logs (padding and OOV included).
AVAZU = dict(
    C1=9,
    C14=2556,
    C15=10,
    C16=11,
    C17=434,
    C18=6,
    C19=70,
    C20=173,
    C21=62,
    app_category=33,
    app_domain=400,
    app_id=6545,
    banner_pos=9,
    device_conn_type=6,
    device_id=820509,
    device_ip=2903322,
    device_model=7259,
    device_type=7,
    hour=26,
    site_category=27,
    site_domain=5461,
    site_id=4051,
    weekday=9,
    weekend=4,
)
CRITEO = dict(
    I1=54,
    I2=105,
    I3=124,
    I4=46,
    I5=221,
    I6=134,
    I7=91,
    I8=77,
    I9=97,
    I10=7,
    I11=27,
    I12=48,
    I13=77,
    C1=1462,
    C2=564,
    C3=1244769,
    C4=562023,
    C5=307,
    C6=23,
    C7=12369,
    C8=635,
    C9=5,
    C10=70515,
    C11=5518,
    C12=1224133,
    C13=3194,
    C14=29,
    C15=13601,
    C16=1004794,
    C17=12,
    C18=5231,
    C19=2145,
    C20=5,
    C21=1162913,
    C22=19,
    C23=17,
    C24=141673,
    C25=102,
    C26=92086,
)
MOVIELENS = dict(user_id=16362, item_id=22575, tag_id=49659)
FRAPPE = dict(
    user=942,
    item=4084,
    daytime=9,
    weekday=9,
    isweekend=4,
    homework=5,
    cost=4,
    weather=11,
    country=82,
    city=233,
)

# dataset -> (vocab, hidden units, batch norm, Mice activation, logged #params)
LOGGED = {
    "avazu": (AVAZU, [512] * 3, False, "pbmish_avazu", 76_490_669),
    "criteo": (CRITEO, [1024] * 3, True, "pbmish_criteo", 115_729_517),
    "movielens": (MOVIELENS, [400] * 3, True, "pbmish_avazu", 2_133_661),
    "frappe": (FRAPPE, [400] * 3, True, "pbmish_avazu", 635_861),
}


def formula(vocab, d, hidden, batch_norm, mice=True, layers=3):
    """The count of the authors' logs, written out term by term."""
    D = len(vocab) * d
    total = sum(vocab.values()) * d + layers * 2 * D + (D * D + D) + (2 * D * D + D)
    dims = [D] + hidden
    total += sum(dims[k] * dims[k + 1] + dims[k + 1] for k in range(len(hidden)))
    total += (2 * sum(hidden) if batch_norm else 0) + (2 * sum(hidden) if mice else 0)
    return total + D + hidden[-1] + 1


def build(vocab=FRAPPE, d=4, cls=IBNet, **over):
    kwargs = dict(embedding_dim=d, dnn_hidden_units=[16, 8], batch_norm=True)
    kwargs.update(over)
    return cls(feature_map_from_vocab(vocab, d), **model_kwargs(**kwargs))


def batch(vocab=FRAPPE, n=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    data = {k: torch.randint(1, v, (n,), generator=gen) for k, v in vocab.items()}
    data["label"] = torch.randint(0, 2, (n,), generator=gen).float()
    return data


@pytest.mark.parametrize("name", list(LOGGED))
def test_parameter_count_equals_authors_log(name):
    vocab, hidden, bn, act, logged = LOGGED[name]
    assert formula(vocab, 20, hidden, bn) == logged
    if sum(vocab.values()) > 1_000_000:
        # the same modules on the meta device: no 0.3-0.45 GB of embedding tables to allocate and fill
        from unittest import mock

        from model_zoo.base import CTRModel

        with mock.patch.object(CTRModel, "model_to_device", lambda self: None), torch.device("meta"):
            model = build(vocab, 20, dnn_hidden_units=hidden, batch_norm=bn, dnn_activations=act)
    else:
        model = build(vocab, 20, dnn_hidden_units=hidden, batch_norm=bn, dnn_activations=act)
    assert count_parameters(model) == logged


def test_relu_and_dcn_counts():
    # the MovieLens log's count needs Mice: ReLU gives 2,131,261 (the authors' code uses Mice)
    assert (
        count_parameters(build(MOVIELENS, 20, dnn_hidden_units=[400] * 3, dnn_activations="relu"))
        == 2_131_261
    )
    # mask_type none = DCN: L*2D + MLP + fc over the same embeddings
    d, hidden = 20, [400] * 3
    D = len(FRAPPE) * d
    dcn = (
        sum(FRAPPE.values()) * d
        + 3 * 2 * D
        + mlp_param_count(D, hidden, batch_norm=True)
        + D
        + hidden[-1]
        + 1
    )
    assert (
        count_parameters(build(FRAPPE, d, dnn_hidden_units=hidden, dnn_activations="relu", mask_type="none"))
        == dcn
    )
    from model_zoo.baselines.dcn import DCN

    assert count_parameters(build(FRAPPE, d, cls=DCN, dnn_hidden_units=hidden, batch_norm=True)) == dcn
    # per-layer mask/compression (the paper's reading) and the variants' closed forms
    for mask_type, shared in (("learned", False), ("gate", True), ("dropout", True)):
        model = build(
            FRAPPE,
            d,
            dnn_hidden_units=hidden,
            dnn_activations="relu",
            mask_type=mask_type,
            shared_augmentation=shared,
        )
        assert count_parameters(model) == dcn + ibnet_branch_param_count(D, 3, mask_type, shared) - 3 * 2 * D


def test_cross_recursion_is_dcn_v1():
    model = build()
    x0 = torch.randn(5, model.branch.crossnet.cross_net[0].bias.numel())
    cross = model.branch.cross_embeddings(x0)
    assert len(cross) == 3 and torch.allclose(cross[-1], model.branch.crossnet(x0), atol=1e-6)
    layer = model.branch.crossnet.cross_net[0]
    expected = x0 * layer.weight(x0) + layer.bias + x0
    assert torch.allclose(cross[0], expected, atol=1e-6)


def test_forward_backward_probabilities_and_gradients():
    model = build()
    model.train()
    out = model(batch())
    assert out["y_pred"].shape == (32, 1)
    assert ((out["y_pred"] > 0) & (out["y_pred"] < 1)).all()
    assert len(out["cross_embs"]) == len(out["aug_embs"]) == 3
    D = len(FRAPPE) * 4
    assert all(c.shape == (32, D) for c in out["cross_embs"] + out["aug_embs"])
    loss = model.compute_loss(out, model.get_labels(batch()))
    loss.backward()
    aug = model.branch.augment
    for name, p in [
        ("mask M", aug.masks[0].logits.weight),
        ("compression H", aug.compress[0].weight),
        ("cross w", model.branch.crossnet.cross_net[0].weight.weight),
        ("embeddings", next(model.embedding_layer.parameters())),
        ("Mice alpha", model.dnn.mlp[2].alpha),
    ]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_ibcl_gradient_reaches_mask_compression_cross_and_embeddings():
    model = build(dnn_activations="relu")
    model.train()
    out = model(batch())
    ibcl_loss(out["cross_embs"], out["aug_embs"], 0.5).backward()
    aug = model.branch.augment
    for p in (
        aug.masks[0].logits.weight,
        aug.compress[0].weight,
        model.branch.crossnet.cross_net[1].weight.weight,
        next(model.embedding_layer.parameters()),
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.fc.weight.grad is None  # IBCL does not touch the predictor


def test_loss_is_bce_plus_weighted_ibcl_or_bce_alone():
    data = batch()
    for ssl in (True, False):
        torch.manual_seed(3)
        model = build(ssl_mode=ssl, cl_weight=0.2, embedding_regularizer=0)
        model.train()
        torch.manual_seed(4)
        out = model(data)
        y = model.get_labels(data)
        bce = F.binary_cross_entropy(out["y_pred"], y)
        expected = bce + (0.2 * ibcl_loss(out["cross_embs"], out["aug_embs"], model.cl_temp) if ssl else 0)
        assert torch.allclose(model.compute_loss(out, y), expected, atol=1e-7)


def test_ibcl_matches_the_loop_definition():
    torch.manual_seed(0)
    cs = [torch.randn(6, 5) for _ in range(3)]
    augs = [torch.randn(6, 5) for _ in range(3)]
    tau = 0.5
    C = torch.cat(cs, 1)
    Ct = torch.cat(augs, 1)
    total = 0.0
    for i in range(6):
        denom = sum(math.exp(F.cosine_similarity(C[i], Ct[j], dim=0).item() / tau) for j in range(6))
        total += -math.log(math.exp(1 / tau) / denom + 1e-5)
    assert ibcl_loss(cs, augs, tau).item() == pytest.approx(total / 6, rel=1e-5)
    # C~ = -C: every similarity flips sign
    expected = 0.0
    for i in range(6):
        denom = sum(math.exp(-F.cosine_similarity(C[i], C[j], dim=0).item() / tau) for j in range(6))
        expected += -math.log(math.exp(1 / tau) / denom + 1e-5)
    assert ibcl_loss(cs, [-c for c in cs], tau).item() == pytest.approx(expected / 6, rel=1e-5)
    # bounds, and small temperatures stay finite
    low, high = ibcl_bounds(6, tau)
    for value in (ibcl_loss(cs, augs, tau), ibcl_loss(cs, cs, tau), ibcl_loss(cs, [-c for c in cs], tau)):
        assert low - 1e-6 <= value.item() <= high + 1e-6
    assert ibcl_loss(cs, cs, tau).item() == pytest.approx(low, abs=1e-3) or ibcl_loss(cs, cs, tau) > low
    assert math.isfinite(ibcl_loss(cs, augs, 0.01).item())


def test_relaxed_bernoulli_mask():
    mask = RelaxedBernoulliMask(6, temperature=0.5).double()
    c = torch.randn(10, 6, dtype=torch.float64)
    torch.manual_seed(1)
    rho = mask(c)
    torch.manual_seed(1)
    assert torch.equal(rho, mask(c))  # same seed, same noise, same rho
    assert ((rho > 0) & (rho < 1)).all()
    # one noise vector of length D per call, shared across the batch (the authors' code)
    noise = torch.logit(rho) * 0.5 - mask.logits(c)
    assert torch.allclose(noise, noise[:1].expand_as(noise), atol=1e-8)
    per_element = RelaxedBernoulliMask(6, temperature=0.5, noise_shape="element").double()
    per_element.logits.load_state_dict(mask.logits.state_dict())
    noise = torch.logit(per_element(c)) * 0.5 - mask.logits(c)
    assert not torch.allclose(noise, noise[:1].expand_as(noise), atol=1e-3)
    # temperature -> 0 gives a {0, 1} mask
    cold = RelaxedBernoulliMask(6, temperature=1e-4).double()
    cold.logits.load_state_dict(mask.logits.state_dict())
    r = cold(c)
    assert ((r < 1e-3) | (r > 1 - 1e-3)).float().mean() > 0.99
    # noise at evaluation: on by default (stochastic predictions), off -> sigmoid(M(c)/tau)
    mask.eval()
    assert not torch.equal(mask(c), mask(c))
    quiet = RelaxedBernoulliMask(6, temperature=0.5, noise_at_eval=False).double()
    quiet.logits.load_state_dict(mask.logits.state_dict())
    quiet.eval()
    assert torch.allclose(quiet(c), torch.sigmoid(mask.logits(c) / 0.5))
    gate = RelaxedBernoulliMask(6, noise=False).double()
    gate.logits.load_state_dict(mask.logits.state_dict())
    assert torch.equal(gate(c), torch.sigmoid(mask.logits(c)))


def test_mask_fill_and_compression():
    c = torch.randn(4, 3)
    rho = torch.rand(4, 3)
    assert torch.allclose(fill_mask(c, rho), rho * c + (1 - rho) * c.mean())
    assert torch.allclose(fill_mask(c, rho, "zero"), rho * c)
    aug = MaskAugmentation(3, num_layers=2, gate_temp=0.3)
    torch.manual_seed(5)
    outs = aug([c, 2 * c])
    torch.manual_seed(5)
    rho = aug.masks[0](c)
    expected = aug.compress[0](torch.cat([c, rho * c + (1 - rho) * c.mean()], dim=1))
    assert torch.allclose(outs[0], expected, atol=1e-6)
    drop = MaskAugmentation(3, mask_type="dropout", random_dropout=0.5)
    drop.eval()
    assert torch.allclose(drop([c])[0], drop.compress[0](torch.cat([c, c], dim=1)))


def test_eval_noise_switch_makes_predictions_deterministic():
    data = batch()
    noisy = build()
    noisy.eval()
    with torch.no_grad():
        assert not torch.equal(noisy(data)["y_pred"], noisy(data)["y_pred"])
    quiet = build(noise_at_eval=False)
    quiet.eval()
    with torch.no_grad():
        assert torch.equal(quiet(data)["y_pred"], quiet(data)["y_pred"])


def test_mice_matches_spec():
    mice = Mice(5, alpha_init=0.0)
    assert sum(p.numel() for p in mice.parameters()) == 10  # alpha and tau per channel
    x = torch.randn(64, 5) * 3 + 1
    mice.train()
    bn = torch.nn.BatchNorm1d(5, affine=False, eps=1e-9)
    assert torch.allclose(mice(x), torch.sigmoid(bn(x)) * x, atol=1e-5)  # alpha = 0: Dice-like p*x
    # the authors' double BN call: running mean moves twice per step (momentum 0.01)
    assert torch.allclose(mice.bn.running_mean, (1 - 0.99**2) * x.mean(0), atol=1e-5)
    one = Mice(5, alpha_init=1.0, double_bn_update=False)
    one(x)
    assert torch.allclose(one.bn.running_mean, 0.01 * x.mean(0), atol=1e-6)
    with torch.no_grad():
        one.tau.fill_(2.0)
    one.train()
    b = bn(x)
    p = torch.sigmoid(b)
    assert torch.allclose(one(x), p * x + (1 - p) * b * torch.tanh(F.softplus(x / 2.0)), atol=1e-5)
    fixed = Mice(5, learnable_tau=False)
    assert sum(p.numel() for p in fixed.parameters()) == 5


@pytest.mark.parametrize(
    "sets",
    [
        ["mask_type=gate", "ssl_mode=false"],  # Table VI "Self Gate"
        ["mask_type=dropout", "random_dropout=0.25"],  # Table VI "Random Mask(0.25) + IBCL"
        ["mask_fill=zero", "noise_at_eval=false", "dnn_activations=relu", "shared_augmentation=false"],
    ],
)
def test_variants_train_on_tiny(train, sets):
    record = train("IBNet_tiny", *sets)
    assert 0.0 <= record["test"]["AUC"] <= 1.0 and math.isfinite(record["test"]["logloss"])


def test_framework_on_dnn_counts_and_trains():
    from model_zoo.baselines.dnn import DNN

    d = 4
    D = len(FRAPPE) * d
    base = build(FRAPPE, d, cls=DNN, hidden_units=[16, 8])
    model = build(FRAPPE, d, cls=IBNetFramework, base_model="DNN", hidden_units=[16, 8])
    assert count_parameters(model) == count_parameters(base) + ibnet_branch_param_count(D, 3) + D + 1
    model.train()
    data = batch()
    out = model(data)
    assert ((out["y_pred"] > 0) & (out["y_pred"] < 1)).all()
    y = model.get_labels(data)
    expected = F.binary_cross_entropy(out["y_pred"], y) + 0.01 * ibcl_loss(
        out["cross_embs"], out["aug_embs"], 0.5
    )
    loss = model.compute_loss(out, y)
    assert torch.allclose(loss, expected, atol=1e-7)
    loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in model.base.embedding_layer.parameters())
    assert model.branch.augment.masks[0].logits.weight.grad.abs().sum() > 0
    # all parameters are in the one optimiser
    assert sum(p.numel() for g in model.optimizer.param_groups for p in g["params"]) == count_parameters(
        model
    )


@pytest.mark.parametrize("base", ["DeepFM", "AutoIntPlus", "WideDeep"])
def test_framework_on_table9_bases(base):
    if base not in registry():
        pytest.skip(f"{base} is not registered")
    model = build(
        FRAPPE, 4, cls=IBNetFramework, base_model=base, dnn_hidden_units=[16, 8], hidden_units=[16, 8]
    )
    plain = build(FRAPPE, 4, cls=registry()[base], dnn_hidden_units=[16, 8], hidden_units=[16, 8])
    D = len(FRAPPE) * 4
    assert count_parameters(model) == count_parameters(plain) + ibnet_branch_param_count(D, 3) + D + 1
    model.train()
    out = model(batch())
    model.compute_loss(out, model.get_labels(batch())).backward()
    assert ((out["y_pred"] > 0) & (out["y_pred"] < 1)).all()


def test_framework_rejects_bad_base():
    from model_zoo.errors import ModelConfigError

    with pytest.raises(ModelConfigError, match="base_model=IBNet"):
        build(cls=IBNetFramework, base_model="IBNet")
    with pytest.raises(ModelConfigError, match="unknown model"):
        build(cls=IBNetFramework, base_model="NoSuchNet")
    with pytest.raises(ModelConfigError, match="mask_type"):
        build(mask_type="sometimes")


def test_bench_infer_same_rows_and_ratio(load):
    from benchmark.commands.bench_infer import bench_infer

    params = load("IBNet_tiny")
    baseline = load("DCN_tiny", f"dataset_id={params['dataset_id']}")
    results = bench_infer(
        params, baseline, batches=2, repeats=2, warmup=1, batch_size=64, load_checkpoint=False, evaluate=True
    )
    ibnet, dcn = results
    assert ibnet["samples"] == dcn["samples"] == 128 and ibnet["batches"] == 2
    assert ibnet["ms_per_100"] > 0 and dcn["ratio"] == pytest.approx(1.0)
    assert ibnet["ratio"] == pytest.approx(ibnet["ms_per_100"] / dcn["ms_per_100"])
    assert ibnet["params"] > dcn["params"] and 0 <= ibnet["metrics"]["AUC"] <= 1
    from benchmark.errors import CTRBenchError

    with pytest.raises(CTRBenchError, match="--batches"):
        bench_infer(params, None, batches=0)


def test_bench_infer_command(tmp_path):
    import json

    from typer.testing import CliRunner

    from benchmark.cli import app

    out = tmp_path / "infer.json"
    res = CliRunner().invoke(
        app,
        [
            "bench-infer",
            "--expid",
            "IBNet_tiny",
            "--baseline-expid",
            "DCN_tiny",
            "--batches",
            "1",
            "--repeats",
            "2",
            "--data-root",
            str(tmp_path / "data"),
            "--set",
            f"model_root={tmp_path}/ck",
            "--baseline-set",
            f"model_root={tmp_path}/ck",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ms/100 samples" in res.output and "x baseline" in res.output
    results = json.loads(out.read_text())
    assert [r["expid"] for r in results] == ["IBNet_tiny", "DCN_tiny"]
    assert results[1]["dataset_id"] == results[0]["dataset_id"] == "tiny_cat"


def test_prelu_is_fuxictrs_per_channel_prelu():
    from model_zoo.layers import MLP
    from tests.oracles import mlp_param_count

    mlp = MLP(6, [5, 4], hidden_activations="prelu")
    prelus = [m for m in mlp.modules() if isinstance(m, torch.nn.PReLU)]
    assert [p.weight.numel() for p in prelus] == [5, 4] and float(
        prelus[0].weight[0].detach()
    ) == pytest.approx(0.1)
    assert sum(p.numel() for p in mlp.parameters()) == mlp_param_count(6, [5, 4], activation="prelu")


@pytest.mark.parametrize("expid", ["IBNet_avazu", "IBNet_criteo", "IBNet_frappe"])
def test_paper_expids_name_the_missing_files_and_source(load, expid):
    from benchmark.errors import CTRBenchError
    from benchmark.runner import prepare_data

    params = load(expid)
    assert params["embedding_dim"] == 20 and params["batch_size"] == 10000
    assert params["monitor"] == {"AUC": 1, "logloss": -1}
    with pytest.raises(CTRBenchError) as err:
        prepare_data(params, quiet=True)
    message = err.value.message
    assert "is missing" in message and "train.csv" in message and "get it from https://" in message


def test_ibnet_targets_resolve_every_cell(monkeypatch):
    import functools
    import glob
    import os

    from benchmark import config as config_mod
    from benchmark.config import load_config
    from benchmark.reproduce import _as_set_args, load_targets, plan
    from tests.conftest import CONFIG, REPO

    # the YAML files do not change during the test: read them once (load_config deep-copies sections)
    monkeypatch.setattr(
        config_mod, "load_sections", functools.lru_cache(maxsize=None)(config_mod.load_sections)
    )
    files = sorted(glob.glob(os.path.join(REPO, "results", "targets", "ibnet_*.yaml")))
    assert len(files) >= 4
    models = registry()
    for path in files:
        targets = load_targets(path)
        assert set(targets["paper"]) <= set(targets["rows"]), path
        for cell in plan(targets):
            params = load_config(CONFIG, cell.expid, _as_set_args(cell.sets))
            assert params["model"] in models, (path, cell.row)
            assert params["dataset_id"] == targets["datasets"][cell.column]["dataset_id"]
            if params["model"] in ("IBNet", "IBNetFramework"):
                assert params["embedding_dim"] == 20
                if targets["name"].startswith("ibnet_table"):  # the paper's tables: batch 10,000
                    assert params["batch_size"] == 10000
