"""SFG: GEN = DIS + the encoders' parameters; generative=False is exactly the base model; GEN trains."""

import pytest
import torch

import model_zoo
from model_zoo.sfg.generator import FeatureGenerator
from model_zoo.testing import count_parameters, feature_map_from_vocab, model_kwargs
from tests.oracles import generator_param_count

VOCAB = {f"f{i}": 50 + 7 * i for i in range(6)}
N, D = len(VOCAB), 8

CASES = [  # (GEN name, DIS name, extra kwargs, number of encoders)
    ("FM_GEN", "FM", {}, 1),
    ("DeepFM_GEN", "DeepFM", {"dnn_hidden_units": [16]}, 1),
    ("IPNN_GEN", "IPNN", {"hidden_units": [16]}, 1),
    ("FmFM_GEN", "FmFM", {}, 1),
    ("FwFM_GEN", "FwFM", {}, 1),
    ("xDeepFM_GEN", "xDeepFM", {"cin_hidden_units": [4, 4, 4], "dnn_hidden_units": [16]}, 3),
    ("DCNv2_GEN", "DCNv2", {"num_cross_layers": 4, "dnn_hidden_units": [16]}, 4),
    ("DCNv2_GEN", "DCNv2", {"model_structure": "crossnet_only", "num_cross_layers": 2}, 2),
]


def build(name, **kwargs):
    torch.manual_seed(0)
    fmap = feature_map_from_vocab(VOCAB, embedding_dim=D)
    return model_zoo.get_model_class(name)(fmap, **model_kwargs(embedding_dim=D, **kwargs))


def batch(n=32):
    g = torch.Generator().manual_seed(1)
    data = {name: torch.randint(1, size, (n,), generator=g) for name, size in VOCAB.items()}
    data["label"] = torch.randint(0, 2, (n,), generator=g).float()
    return data


@pytest.mark.parametrize("gen,dis,extra,encoders", CASES)
def test_gen_params_equal_dis_plus_encoders(gen, dis, extra, encoders):
    expected = count_parameters(build(dis, **extra)) + encoders * generator_param_count(N, D)
    assert count_parameters(build(gen, **extra)) == expected
    # (N d)^2: Eq. 6's W_F(i) in R^{Nd x d} for each of the N fields (App. B.4)
    assert generator_param_count(39, 10) == 152_100 and generator_param_count(24, 16) == 147_456


@pytest.mark.parametrize("gen,dis,extra,encoders", CASES)
def test_non_generative_is_the_base_model(gen, dis, extra, encoders):
    base, same = build(dis, **extra), build(gen, generative=False, **extra)
    assert count_parameters(base) == count_parameters(same)
    same.load_state_dict(base.state_dict())
    base.eval(), same.eval()
    x = batch()
    torch.testing.assert_close(base(x)["y_pred"], same(x)["y_pred"])


@pytest.mark.parametrize("gen,dis,extra,encoders", CASES)
def test_gen_forward_backward_changes_output(gen, dis, extra, encoders):
    model = build(gen, sfg_gamma=2.0, **extra)
    x = batch()
    out = model(x)["y_pred"]
    assert out.shape == (32, 1) and ((out > 0) & (out < 1)).all()
    loss = model.compute_loss(model(x), model.get_labels(x))
    loss.backward()
    grads = [p.grad for p in model.generators.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_generator_options():
    emb = torch.randn(4, N, D)
    gen = FeatureGenerator(N, D, gamma=3.0, activation="relu")
    torch.nn.init.normal_(gen.linear.weight)
    z = gen(emb)
    assert z.shape == emb.shape and (z >= 0).all()
    flat = gen(emb.flatten(start_dim=1))
    torch.testing.assert_close(flat, z.flatten(start_dim=1))
    torch.testing.assert_close(FeatureGenerator(N, D, gamma=0.0, residual=True)(emb), emb)
    shared = FeatureGenerator(N, D, field_share=True)(emb)
    torch.testing.assert_close(shared[:, 0], shared[:, 3])
    # exclude_self: field i's output does not depend on field i's input
    ex = FeatureGenerator(N, D, activation="linear", exclude_self=True)
    torch.nn.init.normal_(ex.linear.weight)
    emb2 = emb.clone()
    emb2[:, 2] += 1.0
    torch.testing.assert_close(ex(emb)[:, 2], ex(emb2)[:, 2])
    assert not torch.allclose(ex(emb)[:, 3], ex(emb2)[:, 3])
    own = FeatureGenerator(N, D, own_field=True)
    assert sum(p.numel() for p in own.parameters()) == generator_param_count(N, D, own_field=True)


def test_paper_expids_resolve():
    from benchmark.config import list_expids, load_config
    from tests.conftest import CONFIG

    expids = [e for e in list_expids(CONFIG) if "_GEN_" in e or "_DIS_" in e]
    assert len(expids) >= 30
    gen = load_config(CONFIG, "DCNv2_GEN_avazu")
    assert gen["num_cross_layers"] == 5 and gen["sfg_gamma"] == 8 and gen["dataset_id"] == "Avazu_x4_001"
    assert load_config(CONFIG, "IPNN_GEN_criteo")["sfg_gamma"] == 0.005


def test_diagnostics_math():
    import numpy as np

    from benchmark.analysis import information_abundance, redundancy, spectrum

    rng = np.random.default_rng(0)
    iso = spectrum(rng.normal(size=(4000, 8)))
    assert iso[0] == 1.0 and information_abundance(iso) > 6.5  # isotropic: IA close to D
    collapsed = spectrum(np.outer(rng.normal(size=4000), np.ones(8)) + 1e-6 * rng.normal(size=(4000, 8)))
    assert information_abundance(collapsed) < 1.01  # rank one: IA close to 1
    x = rng.normal(size=(1000, 4))
    assert redundancy(x, x)["mean_abs"] < 0.1
    assert redundancy(x, np.repeat(x[:, :1], 4, axis=1))["mean_abs"] > 0.2


def test_analyze_dis_vs_gen_writes_json_and_png(load, tmp_path):
    import json

    from benchmark.analysis import train_and_analyse, write

    results = [train_and_analyse(load(e, "epochs=1"), 300) for e in ("FM_DIS_tiny", "FM_GEN_tiny")]
    assert [r["generative"] for r in results] == [False, True]
    assert all(r["samples"] == 200 and r["information_abundance"] >= 1.0 for r in results)
    json_path, png_path = write(results, str(tmp_path), "fm")
    assert json.load(open(json_path))[1]["model"] == "FM_GEN"
    assert open(png_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
