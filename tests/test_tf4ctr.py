"""TF4CTR: parameter counts against the authors' logs (spec tf4ctr.md §9.6), the Twin Focus loss, every
SSEM x DFM combination (forward/backward and one epoch on the tiny fixture)."""

import itertools
import math

import pytest
import torch

from benchmark.errors import CTRBenchError
from benchmark.featuremaps import count_parameters, feature_map_from_vocab, model_kwargs
from model_zoo.layers import mlp_param_count
from model_zoo.layers.twin_focus import TwinFocusLoss, twin_focus_weights
from model_zoo.tf4ctr import TF4CTR

SSEMS = ["share", "SER", "GM", "MoE"]
DFMS = ["sum", "WSF", "VF", "CF", "MoEF"]


def vocab(fields: int, total: int) -> dict:
    """``fields`` categorical fields whose vocab sizes add up to the logged total (only the sum matters)."""
    sizes = {f"f{i}": total // fields for i in range(fields)}
    sizes["f0"] += total - sum(sizes.values())
    return sizes


def tf4ctr(vocab_sizes, embedding_dim=16, sequence=None, **kw):
    fmap = feature_map_from_vocab(vocab_sizes, embedding_dim, sequence=sequence)
    return TF4CTR(fmap, **model_kwargs(embedding_dim=embedding_dim, batch_norm=True, **kw))


def formula(F, total_vocab, ssm, dfm, easy, hard=(400, 400, 400), d=16):
    """Closed form of TF4CTR's parameter count (spec §2-§4); MLP blocks with batch norm."""
    D = F * d
    emb = total_vocab * d
    easy_in = D
    if ssm == "SER":
        emb += total_vocab * (d // 2)
        easy_in = F * (d // 2)
    elif ssm == "GM":
        emb += mlp_param_count(D, [D // 4], output_dim=1, batch_norm=True)
    elif ssm == "MoE":
        emb += 2 * mlp_param_count(D, [D // 2, D], batch_norm=True)
        emb += 2 * mlp_param_count(D, [D // 4], output_dim=2, batch_norm=True)
    H_s, H_c = easy[-1], hard[-1]
    heads = (H_s + 1) + (H_c + 1)
    extra = {"sum": 0, "WSF": 2, "VF": (H_s + 1) + (H_c + 1), "CF": H_s + H_c + 1,
             "MoEF": 2 * (2 * (H_s + H_c) + 2)}[dfm]
    return (emb + mlp_param_count(easy_in, easy, batch_norm=True) + mlp_param_count(D, hard, batch_norm=True)
            + heads + extra)


# ---- parameter counts: the authors' logged numbers ------------------------------------------------
ORACLES = [
    # name, fields, sum of vocab sizes, SSM, DFM, easy_hidden_units, logged #params
    ("Frappe SER/WSF", 10, 5383, "SER", "WSF", [400, 400], 711_996),
    ("ML-1M SER/WSF", 5, 9626, "SER", "WSF", [400], 604_628),
    ("KKBox SER/MoEF", 13, 227_853, "SER", "MoEF", [400, 400], 6_083_278),
    ("Criteo SER/WSF", 39, 910_747, "SER", "WSF", [400, 400], 22_719_132),
    ("Criteo SER/WSF easy [400]", 39, 910_747, "SER", "WSF", [400], 22_557_932),
    ("Frappe v1 share/WSF", 10, 5383, "share", "WSF", [400], 539_732),
    ("Frappe GM/sum", 10, 5383, "GM", "sum", [400], 546_291),
    ("Frappe MoE/sum", 10, 5383, "MoE", "sum", [400], 605_574),
]


@pytest.mark.parametrize("name,F,total,ssm,dfm,easy,logged", ORACLES, ids=[o[0] for o in ORACLES])
def test_param_count_matches_authors_logs(name, F, total, ssm, dfm, easy, logged):
    if name.startswith("KKBox"):
        # KKBox: 11 categorical + 2 sequence fields (genre_ids, artist_name; max_len 3)
        sizes = vocab(F, total)
        seq = {"genre_ids": sizes.pop("f11"), "artist_name": sizes.pop("f12")}
        model = tf4ctr(sizes, sequence=seq, SSM=ssm, DFM=dfm, easy_hidden_units=easy)
    else:
        model = tf4ctr(vocab(F, total), SSM=ssm, DFM=dfm, easy_hidden_units=easy)
    assert count_parameters(model) == logged
    assert formula(F, total, ssm, dfm, easy) == logged


@pytest.mark.parametrize("ssm,dfm", list(itertools.product(SSEMS, DFMS)))
def test_param_count_formula_every_combination(ssm, dfm):
    model = tf4ctr(vocab(10, 5383), SSM=ssm, DFM=dfm, easy_hidden_units=[400])
    assert count_parameters(model) == formula(10, 5383, ssm, dfm, [400])


def test_ser_easy_dim_switch_and_aliases():
    paper = tf4ctr(vocab(10, 5383), SSM="SER", DFM="WSF", easy_embedding_dim=16, easy_hidden_units=[400])
    code = tf4ctr(vocab(10, 5383), SSM="SER", DFM="WSF", easy_hidden_units=[400])
    # paper reading: easy table at the full dim -> +5383*8 embedding and +80*400 first-layer weights
    assert count_parameters(paper) - count_parameters(code) == 5383 * 8 + 80 * 400
    none = tf4ctr(vocab(10, 5383), SSM="none", DFM="none", easy_hidden_units=[400])
    share = tf4ctr(vocab(10, 5383), SSM="share", DFM="sum", easy_hidden_units=[400])
    assert count_parameters(none) == count_parameters(share)
    with pytest.raises(CTRBenchError, match="SSM"):
        tf4ctr(vocab(10, 5383), SSM="attention")
    with pytest.raises(CTRBenchError, match="DFM"):
        tf4ctr(vocab(10, 5383), DFM="max")


# ---- Twin Focus loss ----------------------------------------------------------------------------
def test_twin_focus_loss_matches_eq7():
    torch.manual_seed(0)
    zs, zc = torch.randn(64, 1), torch.randn(64, 1)
    y = torch.randint(0, 2, (64, 1)).float()
    c, gamma, alpha = 0.7, 2.0, 0.25
    loss = TwinFocusLoss(alpha, c, gamma)(zs, zc, y)
    ps, pc = torch.sigmoid(zs), torch.sigmoid(zc)
    pts = torch.where(y == 1, ps, 1 - ps)
    ptc = torch.where(y == 1, pc, 1 - pc)
    expected = alpha * ((c + pts) ** gamma * -torch.log(pts)).mean() \
        + (1 - alpha) * ((2 - c - ptc) ** gamma * -torch.log(ptc)).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_twin_focus_weights_cross_at_one_minus_c_and_bounds():
    p = torch.tensor([0.0, 0.2, 1.0])
    ws, wc = twin_focus_weights(p, c=0.8, gamma=2)
    assert torch.allclose(ws, torch.tensor([0.64, 1.0, 3.24]))
    assert torch.allclose(wc, torch.tensor([1.44, 1.0, 0.04]))


def test_twin_focus_factor_is_not_detached():
    z = torch.tensor([[0.3]], requires_grad=True)
    y = torch.ones(1, 1)
    TwinFocusLoss(alpha=1.0, c=0.5, gamma=2.0)(z, torch.zeros(1, 1), y).backward()
    p = torch.sigmoid(z.detach())
    # d/dz[(c+p)^2 * -log p] = 2(c+p) p(1-p) (-log p) + (c+p)^2 (-(1-p)); a detached factor drops the first term
    full = 2 * (0.5 + p) * p * (1 - p) * -torch.log(p) - (0.5 + p) ** 2 * (1 - p)
    assert torch.allclose(z.grad, full, atol=1e-6)


def test_twin_focus_c_range_checked():
    with pytest.raises(CTRBenchError, match="tf_allow_any_c"):
        TwinFocusLoss(0.25, 1.2, 1)
    loss = TwinFocusLoss(0.25, 1.2, 1.5, allow_any_c=True)   # base 0.8 - p_t < 0 is clamped, no NaN
    y = torch.ones(4, 1)
    assert math.isfinite(float(loss(torch.full((4, 1), 5.0), torch.full((4, 1), 5.0), y)))
    with pytest.raises(CTRBenchError, match="alpha"):
        TwinFocusLoss(1.5, 0.8, 1)


# ---- forward / backward -----------------------------------------------------------------------
def batch_for(model, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for name, spec in model.feature_map.features.items():
        if spec["type"] == "sequence":
            batch[name] = torch.randint(0, spec["vocab_size"], (n, spec["max_len"]), generator=g)
        else:
            batch[name] = torch.randint(1, spec["vocab_size"], (n,), generator=g)
    batch["label"] = torch.randint(0, 2, (n,), generator=g).float()
    return batch


@pytest.mark.parametrize("ssm,dfm", list(itertools.product(SSEMS, DFMS)))
def test_forward_backward_every_combination(ssm, dfm):
    torch.manual_seed(1)
    model = tf4ctr({"a": 20, "b": 30, "c": 15}, embedding_dim=8, sequence={"s": 12}, SSM=ssm, DFM=dfm,
                   easy_hidden_units=[16], hard_hidden_units=[32, 16, 16], net_dropout=0.1,
                   embedding_regularizer=1e-3)
    model.train()
    batch = batch_for(model)
    out = model(batch)
    assert out["y_pred"].shape == (32, 1) and out["logit_simple"].shape == out["logit_complex"].shape == (32, 1)
    assert ((out["y_pred"] > 0) & (out["y_pred"] < 1)).all()
    loss = model.compute_loss(out, model.get_labels(batch))
    loss.backward()
    assert math.isfinite(float(loss))
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert unused == []


def test_add_loss_is_bce_plus_tf_from_forward_tensors():
    model = tf4ctr({"a": 20, "b": 30}, embedding_dim=8, SSM="SER", DFM="CF", easy_hidden_units=[8],
                   hard_hidden_units=[16, 8], alpha=0.3, c=0.9, gamma=1)
    batch = batch_for(model)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    out = model(batch)
    y = model.get_labels(batch)
    loss = model.add_loss(out, y)
    assert len(calls) == 1
    bce = torch.nn.functional.binary_cross_entropy(out["y_pred"], y)
    tf = TwinFocusLoss(0.3, 0.9, 1)(out["logit_simple"], out["logit_complex"], y)
    assert torch.allclose(loss, bce + tf)
    plain = tf4ctr({"a": 20, "b": 30}, embedding_dim=8, DFM="CF", easy_hidden_units=[8], hard_hidden_units=[8],
                   tf_loss=False)
    out = plain(batch)
    assert torch.allclose(plain.add_loss(out, y), torch.nn.functional.binary_cross_entropy(out["y_pred"], y))


def test_wsf_weights_start_at_half_and_vf_eval_is_deterministic():
    model = tf4ctr({"a": 20, "b": 30}, embedding_dim=8, DFM="WSF", easy_hidden_units=[8], hard_hidden_units=[8])
    assert torch.equal(model.dfm.weights.data, torch.tensor([0.5, 0.5]))
    vf = tf4ctr({"a": 20, "b": 30}, embedding_dim=8, DFM="VF", easy_hidden_units=[8], hard_hidden_units=[8])
    batch = batch_for(vf)
    vf.eval()
    with torch.no_grad():
        assert torch.equal(vf(batch)["y_pred"], vf(batch)["y_pred"])
        vf.dfm.eval_noise = True        # the authors' behaviour: Gumbel noise at inference too
        assert not torch.equal(vf(batch)["y_pred"], vf(batch)["y_pred"])


# ---- training on the tiny fixture -------------------------------------------------------------------
@pytest.mark.parametrize("ssm", SSEMS)
def test_every_ssem_dfm_combination_trains_on_tiny(train, ssm):
    for dfm in DFMS:
        record = train("TF4CTR_tiny", f"SSM={ssm}", f"DFM={dfm}", "epochs=1")
        assert 0.0 <= record["test"]["AUC"] <= 1.0 and math.isfinite(record["test"]["logloss"]), (ssm, dfm)
        assert record["params"] > 0
