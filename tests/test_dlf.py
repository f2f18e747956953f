"""DLF: parameter counts (closed form and the released model's 15,190,065 on Criteo), ablation switches,
NAF and gate properties, forward/backward, config and targets wiring. No data is needed."""

import os

import pytest
import torch
import yaml

from benchmark.reproduce import load_targets, plan
from model_zoo.dlf import DLF, GatedResidual
from model_zoo.dlf.block_fusion import BlockAttentionFusion
from model_zoo.errors import ModelConfigError
from model_zoo.testing import feature_map_from_vocab, model_kwargs, random_batch
from tests.conftest import REPO

CRITEO_NUMERIC = [f"I{i}" for i in range(1, 14)]


def criteo_map(d=64):
    return feature_map_from_vocab({f"C{i}": 50 for i in range(1, 27)}, d, numeric=CRITEO_NUMERIC)


def cat_map(num_fields, d=64, vocab=50):
    return feature_map_from_vocab({f"f{i}": vocab for i in range(num_fields)}, d)


def non_embedding(model):
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embedding_layer."))


def build(fmap, **settings):
    torch.manual_seed(0)
    return DLF(fmap, **model_kwargs(**settings))


# ---- closed forms -------------------------------------------------------------------------------------------


def mlp(n_in, hidden, n_out, bn=True):
    total, prev = 0, n_in
    for h in hidden:
        total += prev * h + h + (2 * h if bn else 0)
        prev = h
    return total + prev * n_out + n_out


def naf_count(nb, d, steps=1):
    per_step = nb * (3 * d * d + (nb - 1) * d * d + d)  # Q/K/V per block + cross fusion W^C_M, b^C_M
    return steps * per_step + (steps - 1) * nb * 2 * d + nb * d * d + d  # LN between steps + W_F, b_F


def dlf_count(
    F,
    d=64,
    k=32,
    r=24,
    h=512,
    L=3,
    head=(512,),
    low=True,
    naf=True,
    gate=True,
    dense=True,
    naf_steps=1,
    late_fusion=False,
):
    """Non-embedding parameters of DLF from the block shapes of the authors' code, the reading under which
    Eqs. 5-7 type-check (docs/decisions.md, DLF); independent of the implementation."""
    blocks = (["low"] if low else []) + ["high", "implicit"]
    streams = [[b] for b in blocks] if late_fusion else [blocks]
    total, head_tokens = 0, 0
    for stream in streams:
        n = F
        use_naf = naf and len(stream) > 1
        n_out = k * (len(stream) + (1 if use_naf else 0))
        for _ in range(L):
            explicit = n * r + 2 * n * r + mlp(n * r, [h], k * d)  # W (n x r), LN(n*r), MLP -> k*d
            if "low" in stream:
                total += explicit + (F * n if n != F else 0)  # + token projection of E^(1)
            if "high" in stream:
                total += explicit
            if "implicit" in stream:
                total += n * k + (d if dense else 0)
            total += naf_count(len(stream), d, naf_steps) if use_naf else 0
            total += d * d if gate else 0
            total += n * n_out if n != n_out else 0  # residual token projection
            total += 2 * d  # LayerNorm(d)
            n = n_out
        head_tokens += n
    return total + mlp(head_tokens * d, list(head), 1)


# ---- the released model (the authors' DLF class, Keffee/DLF models.py; DLF_default in model_config.yaml) ---


def test_release_criteo_param_count_is_15190065():
    model = build(criteo_map(), preset="release", embedding_dim=64)
    assert non_embedding(model) == 15_190_065
    assert dlf_count(39, low=True, naf=False, gate=False, dense=False) == 15_190_065
    assert model.token_counts() == [[39, 96, 96, 96]]
    assert not any("gate" in n or "naf" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("fields,millions", [(22, 14.76), (3, 14.29), (10, 14.46)])
def test_release_counts_of_the_other_datasets(fields, millions):
    """Closed-form counts of the released model with the code's defaults: ~14.76M (Avazu), ~14.29M
    (MovieLens), ~14.46M (Frappe)."""
    count = dlf_count(fields, naf=False, gate=False, dense=False)
    assert round(count / 1e6, 2) == millions
    if fields <= 10:  # building the 14M-parameter model is the slow part; two datasets suffice
        assert non_embedding(build(cat_map(fields), preset="release")) == count


# ---- the paper's model and its ablations (small sizes) ------------------------------------------------------

SMALL = dict(
    embedding_dim=8, num_layers=3, block_tokens=4, rank=3, block_mlp_hidden_units=[16], head_hidden_units=[16]
)
SMALL_FORM = dict(d=8, k=4, r=3, h=16, L=3, head=(16,))

ABLATIONS = {
    "full": ({}, {}),
    "no_gate": ({"use_gate": False}, {"gate": False}),
    "no_rli": ({"use_low_order_block": False, "use_gate": False}, {"low": False, "gate": False}),
    "no_naf": ({"use_naf": False}, {"naf": False}),
    "no_rli_naf": (
        {"use_low_order_block": False, "use_gate": False, "use_naf": False},
        {"low": False, "gate": False, "naf": False},
    ),
    "late_fusion": ({"use_naf": False, "naf_ablation": "late_fusion"}, {"naf": False, "late_fusion": True}),
    "naf2": ({"naf_layers": 2}, {"naf_steps": 2}),
    "paper_head": ({"head_hidden_units": []}, {"head": ()}),
}
TOKENS = {
    "full": [[7, 16, 16, 16]],
    "no_gate": [[7, 16, 16, 16]],
    "no_rli": [[7, 12, 12, 12]],
    "no_naf": [[7, 12, 12, 12]],
    "no_rli_naf": [[7, 8, 8, 8]],
    "late_fusion": [[7, 4, 4, 4]] * 3,
    "naf2": [[7, 16, 16, 16]],
    "paper_head": [[7, 16, 16, 16]],
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_paper_preset_counts_and_tokens(name):
    settings, form = ABLATIONS[name]
    model = build(cat_map(7, 8), **{**SMALL, **settings})
    assert non_embedding(model) == dlf_count(7, **{**SMALL_FORM, **form})
    assert model.token_counts() == TOKENS[name]  # n_{l+1} = 4k, 3k without RLI or NAF, 2k without both


def test_paper_preset_full_size_criteo():
    """RLI + NAF + gate at the paper's sizes: NAF adds 9d^2 (Q/K/V) + 3(2d^2+d) (W^C) + 3d^2+d (W_F) per layer."""
    model = build(criteo_map(), embedding_dim=64)
    assert non_embedding(model) == dlf_count(39) == 18_060_945


# ---- properties -----------------------------------------------------------------------------------------------


def fake_batch(fmap, batch=32, seed=0):
    return random_batch(fmap, batch, seed)


@pytest.mark.parametrize("name", ["full", "no_rli_naf", "late_fusion", "naf2"])
def test_forward_backward_probabilities(name):
    fmap = feature_map_from_vocab({f"C{i}": 30 for i in range(6)}, 8, numeric=["I1", "I2"])
    model = build(fmap, **{**SMALL, **ABLATIONS[name][0]})
    model.train()
    batch = fake_batch(fmap)
    out = model(batch)
    y = out["y_pred"]
    assert y.shape == (32, 1) and torch.all((y > 0) & (y < 1))
    assert torch.allclose(y, torch.sigmoid(out["logit"]))
    loss = model.compute_loss(out, model.get_labels(batch))
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    # every parameter gets a finite gradient (embedding rows of unused ids are zero, still present)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch)["y_pred"], model(batch)["y_pred"])


def test_gate_is_bounded_below_by_eps_and_scales_the_residual():
    torch.manual_seed(0)
    gate = GatedResidual(8, eps=1e-3)
    x = torch.randn(5, 6, 8)
    g = gate.gate_values(x)
    assert g.min().item() == pytest.approx(1e-3) and (g >= 1e-3).all()
    expected = torch.clamp(x @ gate.gate.weight.T, min=1e-3) * x
    assert torch.allclose(gate(x), expected)


def test_naf_cross_attention_is_invariant_to_token_order_of_other_blocks():
    torch.manual_seed(0)
    naf = BlockAttentionFusion(3, 8, num_heads=2).eval()
    zl, zc, zd = (torch.randn(4, 5, 8) for _ in range(3))
    h = naf.block_outputs([zl, zc, zd])
    perm = torch.tensor([3, 0, 4, 1, 2])
    h_perm = naf.block_outputs([zl, zc[:, perm], zd])
    assert torch.allclose(h[0], h_perm[0], atol=1e-6) and torch.allclose(h[2], h_perm[2], atol=1e-6)
    assert torch.allclose(h[1][:, perm], h_perm[1], atol=1e-6)  # the permuted block's own rows follow
    assert not torch.allclose(h[1], h_perm[1])
    assert naf([zl, zc, zd]).shape == (4, 5, 8)


def test_naf_needs_equal_block_shapes():
    naf = BlockAttentionFusion(2, 8, num_heads=2)
    with pytest.raises(ValueError, match="equal shape"):
        naf([torch.randn(2, 4, 8), torch.randn(2, 3, 8)])


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"preset": "code"}, "preset='code' for DLF must be one of paper, release"),
        ({"naf_ablation": "late_fusion"}, "also set use_naf: false"),
        ({"naf_num_heads": 3}, "not divisible by naf_num_heads=3"),
        ({"implicit_block": "mlp"}, "implicit_block='mlp'"),
        ({"num_layers": 0}, "num_layers=0"),
    ],
)
def test_bad_settings_are_user_errors(settings, message):
    with pytest.raises(ModelConfigError, match=message):
        build(cat_map(4, 8), embedding_dim=8, **settings)


# ---- configs and tables ----------------------------------------------------------------------------------------


def test_expids_resolve_to_the_intended_presets(load):
    release = load("DLF_release", "dataset_id=tiny_cat")
    assert release["preset"] == "release" and release["embedding_dim"] == 64
    for expid, dataset in [
        ("DLF_criteo", "Criteo_x1"),
        ("DLF_avazu", "Avazu_x1"),
        ("DLF_movielens", "MovielensLatest_x1"),
        ("DLF_frappe", "Frappe_x1"),
    ]:
        params = load(expid, "dataset_id=tiny_cat")
        assert params["preset"] == "paper" and params["batch_size"] == 10000 and params["embedding_dim"] == 64
        raw = yaml.safe_load(open(os.path.join(REPO, "config", "model_config", "dlf.yaml")))
        assert raw[expid]["dataset_id"] == dataset


def test_table3_rows_build_the_ablations():
    """Each Table 3 row's switches give the structure the ablation names."""
    targets = load_targets(os.path.join(REPO, "results", "targets", "dlf_table3.yaml"))
    expected = {
        "DLF": "full",
        "w/o gate": "no_gate",
        "w/o RLI": "no_rli",
        "w/o NAF": "no_naf",
        "w/o RLI + NAF": "no_rli_naf",
    }
    cells = [c for c in plan(targets) if c.column == "criteo" and c.seed == targets["seeds"][0]]
    assert {c.row for c in cells} >= set(expected)
    for cell in cells:
        if cell.row not in expected:
            continue
        switches = {
            k: v
            for k, v in cell.sets.items()
            if k in ("use_gate", "use_low_order_block", "use_naf", "naf_ablation")
        }
        model = build(cat_map(7, 8), **{**SMALL, **switches})
        assert model.token_counts() == TOKENS[expected[cell.row]], cell.row
        assert non_embedding(model) == dlf_count(7, **{**SMALL_FORM, **ABLATIONS[expected[cell.row]][1]})
