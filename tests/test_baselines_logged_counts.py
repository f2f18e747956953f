"""Parameter counts of WideDeep, DeepFM, xDeepFM, DCN/DCNv2, AutoInt(+), AFN(+), FiGNN, GraphFM, EDCN.

They are checked three ways: a closed-form formula per model, the DCN count logged by
the IBNet authors on Avazu_x4, and the "Total number of parameters" lines of the BARS
benchmark logs of FuxiCTR (reczoo/BARS, ranking/ctr/<Model>/<Model>_{frappe,criteo}_x1). Those
logs give no per-field vocab sizes, only totals; every count depends on the vocab through its
sum V only, so V is recovered once per dataset from one log (DCN on Frappe_x1: V = 5,389; DCNv2
on Criteo_x1: V = 2,086,316 rows including the 13 numeric fields) and every other model's logged
total is then an independent check of its structure.
"""

from __future__ import annotations

import pytest

from benchmark.data.registry import FRAPPE_COLUMNS
from model_zoo import get_model_class
from model_zoo.layers.attention import MultiHeadSelfAttention
from model_zoo.testing import count_parameters, feature_map_from_vocab, model_kwargs
from tests.oracles import mlp_param_count, self_attention_param_count

MODELS = [
    "WideDeep",
    "DeepFM",
    "xDeepFM",
    "DCNv2",
    "AutoInt",
    "AutoIntPlus",
    "AFN",
    "AFNPlus",
    "FiGNN",
    "GraphFM",
    "EDCN",
]

# The IBNet authors' Avazu_x4 vocab sizes (min_categr_count 2, padding and OOV included), V = 3,750,999.
AVAZU_X4 = {
    "C1": 9,
    "C14": 2556,
    "C15": 10,
    "C16": 11,
    "C17": 434,
    "C18": 6,
    "C19": 70,
    "C20": 173,
    "C21": 62,
    "app_category": 33,
    "app_domain": 400,
    "app_id": 6545,
    "banner_pos": 9,
    "device_conn_type": 6,
    "device_id": 820509,
    "device_ip": 2903322,
    "device_model": 7259,
    "device_type": 7,
    "hour": 26,
    "site_category": 27,
    "site_domain": 5461,
    "site_id": 4051,
    "weekday": 9,
    "weekend": 4,
}
FRAPPE_FIELDS = list(FRAPPE_COLUMNS)
FRAPPE_V = 5389  # from BARS DCN_frappe_x1_013_efa58c31: 418,591 params
CRITEO_V = 2086316  # from BARS DCNv2_criteo_x1_001_28c60688: 22,018,021 params


def build(name, fmap, **params):
    return get_model_class(name)(fmap, **model_kwargs(**params))


def frappe_map(dim=10):
    # The min-count-2 sizes of the IBNet logs sum to 5,383; BARS used min count 1 (V = 5,389), so the
    # six extra rows are put on `user` (only the sum enters any count).
    sizes = [942 + 6, 4084, 9, 9, 4, 5, 4, 11, 82, 233]
    return feature_map_from_vocab(dict(zip(FRAPPE_FIELDS, sizes)), dim)


def criteo_map(dim=10):
    cats = {f"C{i}": 100 for i in range(1, 26)}
    cats["C26"] = CRITEO_V - 13 - 2500
    return feature_map_from_vocab(cats, dim, numeric=[f"I{i}" for i in range(1, 14)])


# ---- closed forms -----------------------------------------------------------------------------
def dnn_count(in_dim, units, bn, out=1):
    return mlp_param_count(in_dim, units, output_dim=out, batch_norm=bn)


def widedeep_count(V, F, d, units, bn):  # also DeepFM: LR without bias, FM has no parameters
    return V * d + V + dnn_count(F * d, units, bn)


def xdeepfm_count(V, F, d, units, cin, bn):
    sizes, cin_params = [F] + list(cin), 0
    for k in range(1, len(sizes)):
        cin_params += F * sizes[k - 1] * sizes[k] + sizes[k]
    return V * d + V + dnn_count(F * d, units, bn) + cin_params + sum(cin) + 1


def dcn_count(V, F, d, units, bn, layers):
    D = F * d
    return V * d + layers * 2 * D + dnn_count(D, units, bn, out=None) + D + units[-1] + 1


def dcnv2_count(V, F, d, layers, structure="parallel", units=(), bn=False, mix=None):
    D = F * d
    if mix:
        rank, experts = mix
        cross = layers * (2 * experts * D * rank + experts * rank * rank + D) + experts * D
    else:
        cross = layers * (D * D + D)
    towers = {"crossnet_only": 0, "stacked": 1, "parallel": 1, "stacked_parallel": 2}[structure]
    final = {"crossnet_only": D, "stacked": 0, "parallel": D, "stacked_parallel": 0}[structure]
    final += towers * units[-1] if towers else 0
    return V * d + cross + towers * dnn_count(D, units, bn, out=None) + final + 1


def autoint_count(V, F, d, layers, A, ln=False, wide=False, units=(), bn=False, projection="auto"):
    attn = sum(self_attention_param_count(d if i == 0 else A, A, True, ln, projection) for i in range(layers))
    return V * d + attn + F * A + 1 + (V if wide else 0) + (dnn_count(F * d, units, bn) if units else 0)


def afn_count(V, F, d, N, afn_units, bn=False, ensemble_units=None):
    total = V * d + F * N + 2 * F + 2 * N + dnn_count(N * d, afn_units, bn)
    if ensemble_units:
        total += V * d + dnn_count(F * d, ensemble_units, bn) + 3
    return total


def fignn_count(V, F, d, steps, gru=True, reuse=False, scoring="graph"):
    graph = (1 if reuse else steps) * (2 * F * d * d + d)
    return (
        V * d
        + graph
        + 2 * d
        + (6 * d * d + 6 * d if gru else 0)
        + d
        + (F * d * F if scoring == "graph" else d)
    )


def graphfm_count(V, d, layers, heads):
    per_layer = (d * d + d) + (d + 1) + heads * d * d + heads * d
    return V * d + layers * per_layer + layers * d + 1


def edcn_count(V, F, d, layers, bn, bridge="hadamard_product"):
    D = F * d
    extra = {"concatenation": 2 * D * D + D, "attention_pooling": 2 * (D * D + D + D * D)}.get(bridge, 0)
    return (
        V * d
        + layers * (D * D + D)
        + layers * 2 * D
        + layers * (2 * F + (4 * D if bn else 0))
        + layers * extra
        + 3 * D
        + 1
    )


# ---- the IBNet authors' logged DCN count ----------------------------------------------------
def test_dcn_on_avazu_x4_matches_ibnet_logged_count():
    fmap = feature_map_from_vocab(AVAZU_X4, 20)
    assert sum(AVAZU_X4.values()) == 3750999 and fmap.num_fields == 24
    model = build(
        "DCN",
        fmap,
        embedding_dim=20,
        dnn_hidden_units=[512, 512, 512],
        dnn_activations="relu",
        batch_norm=False,
        num_cross_layers=3,
    )
    assert count_parameters(model) == 75795437
    assert dcn_count(3750999, 24, 20, [512] * 3, False, 3) == 75795437


# ---- BARS logged totals (FuxiCTR runs) ---------------------------------------------------------
FRAPPE_CASES = [
    # name, params, logged total, closed form
    (
        "DCN",
        dict(dnn_hidden_units=[400] * 3, batch_norm=True, num_cross_layers=3),
        418591,
        dcn_count(FRAPPE_V, 10, 10, [400] * 3, True, 3),
    ),
    (
        "WideDeep",
        dict(dnn_hidden_units=[400] * 3, batch_norm=True),
        423280,
        widedeep_count(FRAPPE_V, 10, 10, [400] * 3, True),
    ),
    (
        "DeepFM",
        dict(dnn_hidden_units=[400] * 3, batch_norm=True),
        423280,
        widedeep_count(FRAPPE_V, 10, 10, [400] * 3, True),
    ),
    (
        "xDeepFM",
        dict(dnn_hidden_units=[400] * 3, batch_norm=True, cin_hidden_units=[64]),
        429809,
        xdeepfm_count(FRAPPE_V, 10, 10, [400] * 3, [64], True),
    ),
    (
        "DCNv2",
        dict(
            model_structure="parallel",
            num_cross_layers=4,
            parallel_dnn_hidden_units=[400] * 3,
            stacked_dnn_hidden_units=[500] * 3,
            batch_norm=True,
        ),
        458391,
        dcnv2_count(FRAPPE_V, 10, 10, 4, "parallel", [400] * 3, True),
    ),
    (
        "AutoIntPlus",
        dict(
            attention_layers=5,
            attention_dim=128,
            num_heads=4,
            layer_norm=True,
            use_scale=True,
            dnn_hidden_units=[400] * 3,
            batch_norm=True,
        ),
        622180,
        autoint_count(FRAPPE_V, 10, 10, 5, 128, ln=True, units=[400] * 3, bn=True),
    ),
    (
        "AFNPlus",
        dict(logarithmic_neurons=1000, afn_hidden_units=[400], dnn_hidden_units=[400] * 3),
        4482205,
        afn_count(FRAPPE_V, 10, 10, 1000, [400], ensemble_units=[400] * 3),
    ),
    (
        "FiGNN",
        dict(gnn_layers=17, use_gru=False, use_residual=True),
        89090,
        fignn_count(FRAPPE_V, 10, 10, 17, gru=False),
    ),
    (
        "EDCN",
        dict(num_cross_layers=3, bridge_type="hadamard_product", temperature=5, batch_norm=True),
        86351,
        edcn_count(FRAPPE_V, 10, 10, 3, True),
    ),
]


@pytest.mark.parametrize("name,params,logged,formula", FRAPPE_CASES, ids=[c[0] for c in FRAPPE_CASES])
def test_frappe_x1_counts_match_bars_logs(name, params, logged, formula):
    assert count_parameters(build(name, frappe_map(10), embedding_dim=10, **params)) == logged == formula


CRITEO_CASES = [
    (
        "DCNv2",
        dict(parallel_dnn_hidden_units=[500] * 3, num_cross_layers=3),
        22018021,
        dcnv2_count(CRITEO_V, 39, 10, 3, "parallel", [500] * 3),
    ),
    (
        "xDeepFM",
        dict(dnn_hidden_units=[400] * 3, cin_hidden_units=[16, 16]),
        23461462,
        xdeepfm_count(CRITEO_V, 39, 10, [400] * 3, [16, 16], False),
    ),
    (
        "AutoIntPlus",
        dict(
            attention_layers=3,
            attention_dim=256,
            num_heads=2,
            layer_norm=True,
            use_wide=True,
            dnn_hidden_units=[400] * 3,
            batch_norm=True,
        ),
        23844454,
        autoint_count(CRITEO_V, 39, 10, 3, 256, ln=True, wide=True, units=[400] * 3, bn=True),
    ),
    ("FiGNN", dict(gnn_layers=6, use_gru=True), 20925920, fignn_count(CRITEO_V, 39, 10, 6, gru=True)),
    (
        "AFN",
        dict(logarithmic_neurons=400, afn_hidden_units=[800]),
        24081239,
        afn_count(CRITEO_V, 39, 10, 400, [800]),
    ),
    (
        "EDCN",
        dict(num_cross_layers=3, temperature=20, batch_norm=True),
        21329055,
        edcn_count(CRITEO_V, 39, 10, 3, True),
    ),
]


@pytest.mark.parametrize("name,params,logged,formula", CRITEO_CASES, ids=[c[0] for c in CRITEO_CASES])
def test_criteo_x1_counts_match_bars_logs(name, params, logged, formula):
    assert count_parameters(build(name, criteo_map(10), embedding_dim=10, **params)) == logged == formula


# ---- closed forms for variants without a log -----------------------------------------------------
SMALL = {f"f{i}": 7 + 3 * i for i in range(6)}  # V = 87, F = 6
V_SMALL, F_SMALL = sum(SMALL.values()), len(SMALL)

VARIANTS = [
    (
        "DCNv2",
        dict(model_structure="crossnet_only", num_cross_layers=2),
        dcnv2_count(V_SMALL, F_SMALL, 4, 2, "crossnet_only"),
    ),
    (
        "DCNv2",
        dict(model_structure="stacked", num_cross_layers=2, dnn_hidden_units=[16, 8], batch_norm=True),
        dcnv2_count(V_SMALL, F_SMALL, 4, 2, "stacked", [16, 8], True),
    ),
    (
        "DCNv2",
        dict(model_structure="stacked_parallel", num_cross_layers=3, dnn_hidden_units=[16, 8]),
        dcnv2_count(V_SMALL, F_SMALL, 4, 3, "stacked_parallel", [16, 8]),
    ),
    (
        "DCNv2",
        dict(
            model_structure="parallel",
            use_low_rank_mixture=True,
            low_rank=5,
            num_experts=3,
            num_cross_layers=2,
            dnn_hidden_units=[16],
        ),
        dcnv2_count(V_SMALL, F_SMALL, 4, 2, "parallel", [16], mix=(5, 3)),
    ),
    (
        "AutoInt",
        dict(attention_layers=2, attention_dim=8, num_heads=2, residual_projection="always"),
        autoint_count(V_SMALL, F_SMALL, 4, 2, 8, projection="always"),
    ),
    (
        "AFN",
        dict(logarithmic_neurons=5, afn_hidden_units=[8, 8], batch_norm=True),
        afn_count(V_SMALL, F_SMALL, 4, 5, [8, 8], bn=True),
    ),
    (
        "FiGNN",
        dict(gnn_layers=3, reuse_graph_layer=True, attention_scoring="node"),
        fignn_count(V_SMALL, F_SMALL, 4, 3, reuse=True, scoring="node"),
    ),
    (
        "FiGNN",
        dict(gnn_layers=2, use_self_attention=True, num_heads=2),
        fignn_count(V_SMALL, F_SMALL, 4, 2) + self_attention_param_count(4, 4),
    ),
    ("GraphFM", dict(num_layers=3, num_heads=2, num_neighbors=[4, 3, 2]), graphfm_count(V_SMALL, 4, 3, 2)),
    ("GraphFM", dict(num_layers=2, num_heads=1, use_lr=True), graphfm_count(V_SMALL, 4, 2, 1) + V_SMALL),
    (
        "EDCN",
        dict(num_cross_layers=2, bridge_type="concatenation"),
        edcn_count(V_SMALL, F_SMALL, 4, 2, False, "concatenation"),
    ),
    (
        "EDCN",
        dict(num_cross_layers=2, bridge_type="attention_pooling", batch_norm=True),
        edcn_count(V_SMALL, F_SMALL, 4, 2, True, "attention_pooling"),
    ),
]


@pytest.mark.parametrize("name,params,formula", VARIANTS, ids=[f"{v[0]}-{i}" for i, v in enumerate(VARIANTS)])
def test_variant_counts_match_closed_forms(name, params, formula):
    assert (
        count_parameters(build(name, feature_map_from_vocab(SMALL, 4), embedding_dim=4, **params)) == formula
    )


def test_attention_layer_count_formula_matches_module():
    for args in [
        (4, 8, True, False, "auto"),
        (8, 8, True, True, "auto"),
        (8, 8, True, False, "always"),
        (6, 12, False, True, "auto"),
    ]:
        layer = MultiHeadSelfAttention(
            args[0],
            args[1],
            num_heads=2,
            use_residual=args[2],
            layer_norm=args[3],
            residual_projection=args[4],
        )
        assert sum(p.numel() for p in layer.parameters()) == self_attention_param_count(*args)
