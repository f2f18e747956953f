"""Parameter counts of MaskNet, CL4CTR, EulerNet, GDCN, DualMLP/FinalMLP, FinalNet, AFM, SAM, PNN, Wukong,
DLRM, FmFM/FwFM: closed forms, the papers' printed counts and the authors' logs.

Models are built with ``feature_map_from_vocab`` + ``model_kwargs`` (no data).
"""

from __future__ import annotations

import pytest
import torch

import model_zoo
from benchmark.data.synth import CRITEO_CARDINALITY
from model_zoo.testing import count_parameters, feature_map_from_vocab, model_kwargs, random_batch
from tests.oracles import bilinear_fusion_param_count, mlp_param_count

VOCAB = {"f0": 7, "f1": 11, "f2": 5, "f3": 13, "f4": 3}  # n = 5 fields, V = 39 rows
V, N = sum(VOCAB.values()), len(VOCAB)
NUMERIC = ["n0", "n1", "n2"]
D = 4  # embedding size in these tests
P = N * (N - 1) // 2


def fmap(numeric=False, vocab=VOCAB, d=D):
    return feature_map_from_vocab(vocab, d, numeric=NUMERIC if numeric else None)


def build(name, feature_map=None, **over):
    params = {"embedding_dim": D, **over}
    return model_zoo.get_model_class(name)(feature_map or fmap(), **model_kwargs(**params))


def batch(feature_map, size=32, seed=0):
    return random_batch(feature_map, size, seed)


def emb(model, X):
    return model.embed(model.get_inputs(X))


# --------------------------------------------------------------------------------------------------
# closed-form parameter counts


def test_masknet_parallel_count():
    k, b, r, units = 3, 8, 2, [16, 8]
    model = build(
        "MaskNet",
        model_type="parallel",
        parallel_num_blocks=k,
        parallel_block_dim=b,
        reduction_ratio=r,
        dnn_hidden_units=units,
    )
    flat, agg = N * D, N * D * r
    block = (flat * agg + agg) + (agg * flat + flat) + flat * b + 2 * b
    expected = V * D + N * 2 * D + k * block + mlp_param_count(k * b, units, output_dim=1)
    assert count_parameters(model) == expected


def test_masknet_serial_count():
    units, r = [16, 8], 0.5
    model = build(
        "MaskNet",
        model_type="serial",
        serial_block_units=units,
        reduction_ratio=r,
        emb_layernorm=False,
        net_layernorm=False,
    )
    flat, total, prev = N * D, V * D, N * D
    for u in units:
        agg = round(prev * r)
        total += (flat * agg + agg) + (agg * prev + prev) + (prev * u + u)  # Linear with bias when no LN
        prev = u
    assert count_parameters(model) == total + units[-1] + 1


def test_cl4ctr_count():
    model = build("CL4CTR", dnn_hidden_units=[16, 8], cl_encoder_units=[12, 10])
    flat = N * D
    expected = (
        V * D
        + mlp_param_count(flat, [16, 8], output_dim=1)
        + mlp_param_count(flat, [12, 10])
        + 2 * (10 * 10 + 10)
    )
    assert count_parameters(model) == expected
    custom = build("CL4CTR", dnn_hidden_units=[16], cl_encoder_units=[12], cl_projection_dim=5)
    assert count_parameters(custom) == (
        V * D + mlp_param_count(flat, [16], output_dim=1) + mlp_param_count(flat, [12]) + 2 * (12 * 5 + 5)
    )


def test_eulernet_count():
    orders = [6, 3]
    for norm in (False, True):
        model = build("EulerNet", order_list=orders, apply_norm=norm)
        total, n_in = V * D + N, N
        for m in orders:
            total += n_in * m + 2 * m * D + (n_in * D) * (m * D) + m * D + (2 * D if norm else 0)
            n_in = m
        assert count_parameters(model) == total + orders[-1] * D + 1


def test_gdcn_counts():
    flat, layers, units = N * D, 3, [16, 8]
    cross = layers * (2 * flat * flat + flat)
    stacked = build("GDCN", num_cross_layers=layers, dnn_hidden_units=units)
    assert count_parameters(stacked) == V * D + cross + mlp_param_count(flat, units, output_dim=1)
    parallel = build("GDCNP", num_cross_layers=layers, dnn_hidden_units=units, batch_norm=True)
    assert count_parameters(parallel) == (
        V * D + cross + mlp_param_count(flat, units, batch_norm=True) + flat + units[-1] + 1
    )


def test_dualmlp_and_finalmlp_counts():
    flat = N * D
    dual = build("DualMLP", mlp1_hidden_units=[16], mlp2_hidden_units=[8, 8], mlp1_batch_norm=True)
    assert count_parameters(dual) == (
        V * D
        + mlp_param_count(flat, [16], output_dim=1, batch_norm=True)
        + mlp_param_count(flat, [8, 8], output_dim=1)
    )
    final = build("FinalMLP", mlp1_hidden_units=[16], mlp2_hidden_units=[8], fs_hidden_units=[6], num_heads=4)
    gate = D + mlp_param_count(D, [6], output_dim=flat)  # learnable context + gate MLP, per stream
    assert count_parameters(final) == (
        V * D
        + 2 * gate
        + mlp_param_count(flat, [16])
        + mlp_param_count(flat, [8])
        + bilinear_fusion_param_count(16, 8, 4)
    )
    assert bilinear_fusion_param_count(16, 8, 4) == 16 + 8 + 1 + 4 * 4 * 2
    ctx = build(
        "FinalMLP",
        mlp1_hidden_units=[16],
        mlp2_hidden_units=[8],
        fs_hidden_units=[6],
        num_heads=1,
        fs1_context=["f0", "f1"],
        fs2_context=[],
        use_fs=True,
    )
    assert count_parameters(ctx) == (
        V * D
        + mlp_param_count(2 * D, [6], output_dim=flat)
        + gate
        + mlp_param_count(flat, [16])
        + mlp_param_count(flat, [8])
        + 16
        + 8
        + 1
        + 128
    )
    no_fs = build("FinalMLP", mlp1_hidden_units=[16], mlp2_hidden_units=[8], use_fs=False, num_heads=2)
    assert count_parameters(no_fs) == (
        V * D
        + mlp_param_count(flat, [16])
        + mlp_param_count(flat, [8])
        + bilinear_fusion_param_count(16, 8, 2)
    )


def _final_block(input_dim, units, residual, bn=True):
    total = 0
    for u in units:
        out = 2 * u if residual == "sum" else u
        total += input_dim * out + out + (2 * u if bn else 0)
        input_dim = u
    return total + units[-1] + 1  # + the block's linear head


def test_finalnet_counts():
    two = build(
        "FinalNet",
        block_type="2B",
        block1_hidden_units=[8, 6],
        block2_hidden_units=[4],
        residual_type="concat",
        use_feature_gating=True,
        gating_residual="concat",
    )
    expected = (
        V * D + (N * N + N) + _final_block(2 * N * D, [8, 6], "concat") + _final_block(N * D, [4], "concat")
    )
    assert count_parameters(two) == expected
    one = build(
        "FinalNet",
        block_type="1B",
        block1_hidden_units=[8, 6],
        residual_type="sum",
        use_feature_gating=False,
        batch_norm=False,
    )
    assert count_parameters(one) == V * D + _final_block(N * D, [8, 6], "sum", bn=False)


def test_afm_count():
    attention = 6
    model = build("AFM", attention_dim=attention)
    assert count_parameters(model) == (V + 1) + V * D + (D * attention + attention) + attention + D
    plain = build("AFM", use_attention=False)
    assert count_parameters(plain) == (V + 1) + V * D + D


@pytest.mark.parametrize(
    "mode,aggregation,residual,layers,expected_extra",
    [
        ("SAM1", "concat", False, 1, N * D + 1),
        ("SAM1", "weighted_pooling", False, 1, N + D + 1),
        ("SAM2A", "concat", False, 1, N * N * D + N * N * D + 1),
        ("SAM2E", "concat", False, 1, N * N * D + 1),
        ("SAM2E", "weighted_pooling", False, 1, N * N + D + 1),
        ("SAM3A", "concat", True, 2, 2 * (N * N * D + 2 * D * D) + N * D + 1),
        ("SAM3E", "concat", False, 3, 3 * D * D + N * D + 1),
    ],
)
def test_sam_counts(mode, aggregation, residual, layers, expected_extra):
    model = build(
        "SAM",
        interaction_type=mode,
        aggregation=aggregation,
        use_residual=residual,
        num_interaction_layers=layers,
    )
    assert count_parameters(model) == V * D + expected_extra


@pytest.mark.parametrize(
    "name,over,product_width,kernel",
    [
        ("IPNN", {}, P, 0),
        ("OPNN", {}, D * D, 0),
        ("KPNN", {"kernel_type": "mat"}, P, P * D * D),
        ("KPNN", {"kernel_type": "vec"}, P, P * D),
        ("KPNN", {"kernel_type": "num"}, P, P),
        ("PNN", {"product_type": "outer"}, D * D, 0),
    ],
)
def test_pnn_counts(name, over, product_width, kernel):
    model = build(name, hidden_units=[16, 8], batch_norm=True, **over)
    assert count_parameters(model) == (
        V * D + kernel + mlp_param_count(N * D + product_width, [16, 8], output_dim=1, batch_norm=True)
    )


def test_wukong_count():
    layers, n_fmb, n_lcb, rank, fmb_units, head = 2, 3, 4, 3, [16], [12]
    model = build(
        "Wukong",
        num_layers=layers,
        num_emb_fmb=n_fmb,
        num_emb_lcb=n_lcb,
        rank_fmb=rank,
        fmb_hidden_units=fmb_units,
        dnn_hidden_units=head,
    )
    total, n_in = V * D, N
    for _ in range(layers):
        n_out = n_fmb + n_lcb
        total += n_in * rank + 2 * n_in * rank + mlp_param_count(n_in * rank, fmb_units, output_dim=n_fmb * D)
        total += n_in * n_lcb + (n_in * n_out if n_in != n_out else 0) + 2 * D
        n_in = n_out
    assert count_parameters(model) == total + mlp_param_count(n_in * D, head, output_dim=1)


def test_dlrm_count_small():
    model = build("DLRM", fmap(numeric=True), bottom_mlp_units=[8, D], top_mlp_units=[16])
    tokens = N + 1
    assert count_parameters(model) == (
        V * D
        + mlp_param_count(len(NUMERIC), [8, D])
        + mlp_param_count(tokens * (tokens - 1) // 2 + D, [16], output_dim=1)
    )
    cat = build("DLRM", fmap(numeric=True), bottom_mlp_units=[D], top_mlp_units=[16], interaction_op="cat")
    assert count_parameters(cat) == (
        V * D + mlp_param_count(len(NUMERIC), [D]) + mlp_param_count(tokens * D, [16], output_dim=1)
    )
    no_numeric = build("DLRM", fmap(), top_mlp_units=[16])  # no bottom MLP, P dots only
    assert no_numeric.bottom_mlp is None
    assert count_parameters(no_numeric) == V * D + mlp_param_count(P, [16], output_dim=1)


# DLRM's Criteo-Kaggle vocabulary: the full file, no count threshold
DLRM_KAGGLE_VOCAB = CRITEO_CARDINALITY  # Kaggle Criteo's per-column distinct values (DLRM's full vocabulary)


def test_dlrm_maskfusion_criteo_count(monkeypatch):
    """MaskFusion Tables 3/4: the DLRM baseline's 540.68M (540.67M) is 540,677,217 parameters with DLRM's
    full Criteo-Kaggle vocabulary (App. A)."""
    # skip the N(0, 1e-4) fill of 540M embedding weights: the tables stay untouched virtual memory
    monkeypatch.setattr(torch.nn.init, "normal_", lambda tensor, *args, **kwargs: tensor)
    assert sum(DLRM_KAGGLE_VOCAB) == 33_762_577
    feature_map = feature_map_from_vocab(
        {f"C{i + 1}": v for i, v in enumerate(DLRM_KAGGLE_VOCAB)}, 16, numeric=[f"I{i}" for i in range(1, 14)]
    )
    model = model_zoo.get_model_class("DLRM")(
        feature_map,
        **model_kwargs(
            embedding_dim=16,
            bottom_mlp_units=[512, 256, 64, 16],
            top_mlp_units=[512, 256],
            interaction_op="dot",
        ),
    )
    assert count_parameters(model.bottom_mlp) == 155_984
    assert count_parameters(model.dnn) == 320_001  # top MLP 367-512-256-1 (351 dots + 16)
    assert count_parameters(model) == 540_677_217


def test_dualmlp_tf4ctr_frappe_log_count():
    """The TF4CTR authors' v1 Frappe log (Share, easy [400]) has 539,732 parameters =
    86,128 embeddings + 65,601 (MLP_s [400] + BN + output) + 388,001 (MLP_c [400]x3 + BN + output) + 2
    fusion weights; DualMLP is those two towers with summed logits, so 539,730."""
    frappe = {
        "user": 942,
        "item": 4084,
        "daytime": 9,
        "weekday": 9,
        "isweekend": 4,
        "homework": 5,
        "cost": 4,
        "weather": 11,
        "country": 82,
        "city": 233,
    }
    model = build(
        "DualMLP",
        feature_map_from_vocab(frappe, 16),
        embedding_dim=16,
        mlp1_hidden_units=[400],
        mlp1_batch_norm=True,
        mlp2_hidden_units=[400, 400, 400],
        mlp2_batch_norm=True,
    )
    assert count_parameters(model.embedding_layer) == 86_128
    assert count_parameters(model.mlp1) == 65_601
    assert count_parameters(model.mlp2) == 388_001
    assert count_parameters(model) == 539_732 - 2


def test_fmfm_fwfm_counts():
    assert count_parameters(build("FmFM")) == V + 1 + V * D + P * D * D
    assert count_parameters(build("FmFM", field_interaction_type="vectorized")) == V + 1 + V * D + P * D
    linear = {"LW": V, "FeLV": V * D, "FiLV": N * D}
    for kind, extra in linear.items():
        assert count_parameters(build("FwFM", linear_type=kind)) == V * D + P + 1 + extra
