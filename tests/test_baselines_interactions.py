"""WideDeep, DeepFM, xDeepFM, DCNv2, AutoInt(+), AFN(+), FiGNN, GraphFM, EDCN: forward/backward with
probabilities out, and each model's interaction against its equation or fuxictr's layer on small inputs."""

from __future__ import annotations

import pytest
import torch

from model_zoo.errors import ModelConfigError
from model_zoo.layers.attention import MultiHeadSelfAttention
from model_zoo.testing import feature_map_from_vocab, random_batch
from tests.test_baselines_logged_counts import F_SMALL, MODELS, SMALL, build

# ---- forward / backward on every model ---------------------------------------------------------
TINY_PARAMS = {
    "WideDeep": dict(dnn_hidden_units=[16, 8], batch_norm=True),
    "DeepFM": dict(dnn_hidden_units=[16, 8], dnn_activations="mice"),
    "xDeepFM": dict(dnn_hidden_units=[16], cin_hidden_units=[4, 3]),
    "DCNv2": dict(
        model_structure="stacked_parallel",
        use_low_rank_mixture=True,
        low_rank=3,
        num_experts=2,
        dnn_hidden_units=[16, 8],
    ),
    "AutoInt": dict(attention_layers=2, attention_dim=8, num_heads=2, use_wide=True, layer_norm=True),
    "AutoIntPlus": dict(attention_layers=1, attention_dim=8, num_heads=2, dnn_hidden_units=[16]),
    "AFN": dict(logarithmic_neurons=6, afn_hidden_units=[16]),
    "AFNPlus": dict(logarithmic_neurons=6, afn_hidden_units=[16], dnn_hidden_units=[16], batch_norm=True),
    "FiGNN": dict(gnn_layers=2),
    "GraphFM": dict(num_layers=2, num_heads=2, num_neighbors=[3, 2]),
    "EDCN": dict(num_cross_layers=2, bridge_type="attention_pooling", batch_norm=True),
}


def mixed_map(dim=4):
    return feature_map_from_vocab({f"c{i}": 5 + i for i in range(5)}, dim, numeric=["n0", "n1"])


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_outputs_probabilities(name):
    torch.manual_seed(0)
    fmap = mixed_map(4)
    model = build(name, fmap, embedding_dim=4, **TINY_PARAMS[name])
    model.train()
    batch = random_batch(fmap)
    out = model(batch)
    assert out["y_pred"].shape == (32, 1) and out["logit"].shape == (32, 1)
    assert torch.all((out["y_pred"] > 0) & (out["y_pred"] < 1))
    assert torch.allclose(out["y_pred"], torch.sigmoid(out["logit"]))
    loss = model.compute_loss(out, model.get_labels(batch))
    assert torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    emb = [g for n, g in grads.items() if n.startswith("embedding_layer.") and g is not None]
    assert emb and any(float(g.abs().sum()) > 0 for g in emb)
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"parameters without gradient: {missing}"
    model.eval()
    with torch.no_grad():
        single = model({k: v[:1] for k, v in batch.items()})["y_pred"]
    assert single.shape == (1, 1)


# ---- semantics ----------------------------------------------------------------------------------
def test_deepfm_pairwise_term_with_explicit_operands():
    from model_zoo.baselines.deepfm import pairwise_product_sum

    torch.manual_seed(1)
    model = build("DeepFM", feature_map_from_vocab(SMALL, 4), embedding_dim=4, dnn_hidden_units=[8])
    a, b = torch.randn(5, F_SMALL, 4), torch.randn(5, F_SMALL, 4)
    brute = sum((a[:, i] * b[:, j]).sum(-1) for i in range(F_SMALL) for j in range(i + 1, F_SMALL))
    assert torch.allclose(model.fm_interact(a, b).squeeze(-1), brute, atol=1e-5)
    assert torch.allclose(model.fm_interact(a), pairwise_product_sum(a, a), atol=1e-5)
    assert not torch.allclose(model.fm_interact(a, b), model.fm_interact(a), atol=1e-3)


def test_xdeepfm_cin_with_explicit_base_equals_fuxictr_cin():
    torch.manual_seed(2)
    model = build("xDeepFM", feature_map_from_vocab(SMALL, 4), embedding_dim=4, cin_hidden_units=[5, 3])
    emb = torch.randn(7, F_SMALL, 4)
    reference = model.cin_logit(emb)
    assert torch.allclose(model.cin_logit(emb, base_fn=lambda k, prev: None), reference, atol=1e-5)
    assert torch.allclose(model.cin_logit(emb, base_fn=lambda k, prev: emb.clone()), reference, atol=1e-5)
    other = model.cin_logit(emb, base_fn=lambda k, prev: torch.randn_like(emb))
    assert not torch.allclose(other, reference, atol=1e-4)


@pytest.mark.parametrize("mix", [False, True])
def test_dcnv2_explicit_operand_path_equals_fuxictr_crossnet(mix):
    torch.manual_seed(3)
    model = build(
        "DCNv2",
        feature_map_from_vocab(SMALL, 4),
        embedding_dim=4,
        model_structure="crossnet_only",
        num_cross_layers=3,
        use_low_rank_mixture=mix,
        low_rank=3,
        num_experts=2,
    )
    x0 = torch.randn(6, F_SMALL * 4)
    assert torch.allclose(model.cross(x0, operand_fn=lambda l, x: None), model.cross(x0), atol=1e-5)
    assert model.cross(x0[:1]).shape == (1, F_SMALL * 4)
    swapped = model.cross(x0, operand_fn=lambda l, x: torch.ones_like(x))
    assert not torch.allclose(swapped, model.cross(x0), atol=1e-4)


def test_self_attention_is_permutation_equivariant_over_fields():
    torch.manual_seed(4)
    layer = MultiHeadSelfAttention(4, 8, num_heads=2, layer_norm=True).eval()
    x = torch.randn(3, 5, 4)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(layer(x)[:, perm], layer(x[:, perm]), atol=1e-6)
    assert layer(x).min() >= 0  # ReLU output
    with pytest.raises(ModelConfigError):
        MultiHeadSelfAttention(4, 10, num_heads=3)


def test_fignn_graph_is_row_stochastic_without_self_loops():
    torch.manual_seed(5)
    model = build("FiGNN", feature_map_from_vocab(SMALL, 4), embedding_dim=4, gnn_layers=2)
    graph = model.build_graph(torch.randn(4, F_SMALL, 4))
    assert torch.allclose(graph.sum(-1), torch.ones(4, F_SMALL), atol=1e-6)
    assert torch.all(torch.diagonal(graph, dim1=1, dim2=2) == 0)


def test_graphfm_keeps_exactly_m_neighbours_per_node():
    torch.manual_seed(6)
    model = build(
        "GraphFM", feature_map_from_vocab(SMALL, 4), embedding_dim=4, num_layers=2, num_neighbors=[2, 4]
    )
    for layer, m in zip(model.graph_layers, [2, 4]):
        h = torch.randn(3, F_SMALL, 4)
        weights, keep = layer.select(h.unsqueeze(2) * h.unsqueeze(1))
        assert torch.all(keep.sum(-1) == m)
        assert not keep.diagonal(dim1=1, dim2=2).any()
        assert torch.all((weights > 0) == keep)
    with pytest.raises(ModelConfigError):
        build(
            "GraphFM", feature_map_from_vocab(SMALL, 4), embedding_dim=4, num_layers=2, num_neighbors=[6, 2]
        )


def test_graphfm_residual_keeps_first_order_signal_at_init():
    torch.manual_seed(9)
    fmap = feature_map_from_vocab(SMALL, 4)
    batch = random_batch(fmap, rows=64)
    spread = {}
    for residual in (True, False):
        model = build("GraphFM", fmap, embedding_dim=4, num_layers=2, use_residual=residual).eval()
        with torch.no_grad():
            spread[residual] = float(model(batch)["y_pred"].std())
        h = torch.randn(2, F_SMALL, 4)
        expected = h + model.graph_layers[0](h) if residual else model.graph_layers[0](h)
        assert torch.allclose(model.interact(0, h), expected, atol=1e-6)
    # products of two 1e-4 embeddings vanish next to the bias: only the residual moves predictions
    assert spread[True] > 1e-6 > spread[False]


def test_afn_logarithmic_neurons_compute_products_of_powers():
    torch.manual_seed(7)
    model = build(
        "AFN", feature_map_from_vocab(SMALL, 4), embedding_dim=4, logarithmic_neurons=2, afn_hidden_units=[4]
    ).eval()
    for bn in (model.log_batch_norm, model.exp_batch_norm):  # identity BNs in eval mode
        bn.running_mean.zero_(), bn.running_var.fill_(1.0), bn.weight.data.fill_(1.0), bn.bias.data.zero_()
        bn.eps = 0.0
    with torch.no_grad():
        model.log_coefficients.weight.zero_()
        model.log_coefficients.weight[0, 1] = 1.0  # neuron 0: |e_1|
        model.log_coefficients.weight[1, 0], model.log_coefficients.weight[1, 2] = (
            2.0,
            0.5,
        )  # |e_0|^2 |e_2|^.5
        emb = torch.rand(3, F_SMALL, 4) + 0.1
        out = model.logarithmic_net(emb).view(3, 2, 4)
    assert torch.allclose(out[:, 0], emb[:, 1], rtol=1e-5)
    assert torch.allclose(out[:, 1], emb[:, 0] ** 2 * emb[:, 2] ** 0.5, rtol=1e-5)


def test_edcn_regulation_gates_and_cross_residual():
    torch.manual_seed(8)
    fmap = feature_map_from_vocab(SMALL, 4)
    model = build("EDCN", fmap, embedding_dim=4, num_cross_layers=2, temperature=0.5)
    with torch.no_grad():
        model.regulations[0].cross_gate.copy_(torch.arange(F_SMALL, dtype=torch.float))
    flat = torch.ones(2, F_SMALL * 4)
    cross, deep = model.regulate(0, flat)
    gates = (torch.arange(F_SMALL, dtype=torch.float) / 0.5).softmax(-1)
    assert torch.allclose(cross.view(2, F_SMALL, 4)[0, :, 0], gates, atol=1e-6)
    assert torch.allclose(deep, torch.full_like(deep, 1.0 / F_SMALL))
    x0, xl = torch.randn(2, F_SMALL * 4), torch.randn(2, F_SMALL * 4)
    plain = build("EDCN", fmap, embedding_dim=4, num_cross_layers=2, cross_residual=False)
    plain.load_state_dict(model.state_dict())
    assert torch.allclose(model.cross_interact(0, x0, xl), plain.cross_interact(0, x0, xl) + xl, atol=1e-6)
