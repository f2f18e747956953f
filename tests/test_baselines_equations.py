"""MaskNet, CL4CTR, EulerNet, GDCN, DualMLP/FinalMLP, FinalNet, AFM, SAM, PNN, Wukong, DLRM, FmFM/FwFM:
forward/backward with probabilities out, the papers' equations on small inputs, and the auxiliary losses."""

from __future__ import annotations

import itertools

import pytest
import torch
from sklearn.metrics import roc_auc_score

from tests.test_baselines_closed_form_counts import D, N, P, batch, build, emb, fmap

# --------------------------------------------------------------------------------------------------
# forward + backward on every model of this family, probabilities out

CASES = [
    (
        "MaskNet",
        {
            "model_type": "parallel",
            "parallel_num_blocks": 3,
            "parallel_block_dim": 8,
            "dnn_hidden_units": [16],
        },
    ),
    ("MaskNet", {"model_type": "serial", "serial_block_units": [16, 8], "reduction_ratio": 2}),
    ("CL4CTR", {"dnn_hidden_units": [16], "cl_encoder_units": [12]}),
    (
        "CL4CTR",
        {
            "dnn_hidden_units": [16],
            "cl_encoder": "transformer",
            "cl_num_heads": 2,
            "cl_augmentation": "feature",
        },
    ),
    ("CL4CTR", {"dnn_hidden_units": [16], "cl_augmentation": "dimension", "cl_mask_ratio": 0.3}),
    ("EulerNet", {"order_list": [6, 4], "apply_norm": True, "net_ex_dropout": 0.1, "net_im_dropout": 0.1}),
    ("GDCN", {"dnn_hidden_units": [16, 8]}),
    ("GDCNP", {"dnn_hidden_units": [16, 8], "batch_norm": True}),
    ("DualMLP", {"mlp1_hidden_units": [16], "mlp2_hidden_units": [8, 8]}),
    (
        "FinalMLP",
        {"mlp1_hidden_units": [16], "mlp2_hidden_units": [8], "num_heads": 4, "fs_hidden_units": [8]},
    ),
    (
        "FinalMLP",
        {
            "mlp1_hidden_units": [16],
            "mlp2_hidden_units": [8],
            "fs1_context": ["f0"],
            "fs2_context": ["f1", "n0"],
            "num_heads": 2,
        },
    ),
    ("FinalNet", {"block_type": "2B", "block1_hidden_units": [8, 8], "block2_hidden_units": [8]}),
    (
        "FinalNet",
        {
            "block_type": "1B",
            "residual_type": "sum",
            "use_feature_gating": False,
            "block1_hidden_activations": "relu",
            "block1_dropout": 0.1,
        },
    ),
    ("AFM", {"attention_dim": 6, "attention_dropout": [0.1, 0.1]}),
    ("SAM", {"interaction_type": "SAM1", "aggregation": "weighted_pooling"}),
    ("SAM", {"interaction_type": "SAM2A"}),
    ("SAM", {"interaction_type": "SAM2E", "aggregation": "weighted_pooling"}),
    ("SAM", {"interaction_type": "SAM3A", "use_residual": True, "num_interaction_layers": 2}),
    ("SAM", {"interaction_type": "SAM3E", "num_interaction_layers": 2, "net_dropout": 0.1}),
    ("PNN", {"product_type": "inner", "hidden_units": [16]}),
    ("IPNN", {"hidden_units": [16], "batch_norm": True}),
    ("OPNN", {"hidden_units": [16]}),
    ("KPNN", {"hidden_units": [16], "kernel_type": "mat"}),
    ("KPNN", {"hidden_units": [16], "kernel_type": "vec"}),
    ("KPNN", {"hidden_units": [16], "kernel_type": "num"}),
    (
        "Wukong",
        {
            "num_layers": 2,
            "num_emb_fmb": 3,
            "num_emb_lcb": 4,
            "rank_fmb": 3,
            "fmb_hidden_units": [16],
            "dnn_hidden_units": [16],
        },
    ),
    ("DLRM", {"bottom_mlp_units": [8, D], "top_mlp_units": [16]}),
    ("DLRM", {"bottom_mlp_units": [D], "top_mlp_units": [16], "interaction_op": "cat"}),
    ("FmFM", {"field_interaction_type": "matrixed"}),
    ("FmFM", {"field_interaction_type": "vectorized", "regularizer": 1e-6}),
    ("FwFM", {"linear_type": "LW"}),
    ("FwFM", {"linear_type": "FeLV"}),
    ("FwFM", {"linear_type": "FiLV"}),
]


@pytest.mark.parametrize("name,over", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_forward_backward_probabilities(name, over):
    torch.manual_seed(0)
    feature_map = fmap(numeric=True)
    model = build(name, feature_map, **over)
    X = batch(feature_map)
    model.train()
    out = model(X)
    loss = model.compute_loss(out, model.get_labels(X))
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "embedding_layer" in n)
    model.eval()
    with torch.no_grad():
        y = model(X)["y_pred"]
    assert y.shape == (32, 1)
    assert torch.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()
    assert set(model(X)) >= {"y_pred", "logit"}


# --------------------------------------------------------------------------------------------------
# the papers' equations on small inputs


def test_pairwise_operands_are_explicit():
    """interact(left, right) pairs left_i with right_j for i < j; a swapped operand enters as given."""
    torch.manual_seed(1)
    left, right = torch.randn(3, N, D), torch.randn(3, N, D)
    manual = torch.stack(
        [(left[:, i] * right[:, j]).sum(-1) for i, j in itertools.combinations(range(N), 2)], 1
    )
    fwfm = build("FwFM")
    assert torch.allclose(fwfm.interact(left, right), manual, atol=1e-6)
    assert torch.allclose(build("IPNN").interact(left, right), manual, atol=1e-6)
    assert torch.allclose(build("DLRM", fmap(), top_mlp_units=[4]).interact(left, right), manual, atol=1e-6)
    afm = build("AFM")
    products = torch.stack([left[:, i] * right[:, j] for i, j in itertools.combinations(range(N), 2)], 1)
    assert torch.allclose(afm.interact(left, right), products, atol=1e-6)
    assert not torch.allclose(fwfm.interact(left, right), fwfm.interact(right, left))


def test_fmfm_with_identity_transforms_is_fm_and_matrices_act_on_left():
    torch.manual_seed(2)
    left, right = torch.randn(4, N, D), torch.randn(4, N, D)
    for kind in ("matrixed", "vectorized"):
        model = build("FmFM", field_interaction_type=kind)
        with torch.no_grad():  # M_ij = I (or 1): FmFM reduces to FM
            ones = torch.eye(D).expand_as(model.field_transform) if kind == "matrixed" else 1.0
            model.field_transform.copy_(torch.ones_like(model.field_transform) * ones)
        fm = 0.5 * (left.sum(1).pow(2) - left.pow(2).sum(1)).sum(-1)
        assert torch.allclose(model.interact(left, left).sum(-1), fm, atol=1e-5)
    model = build("FmFM")
    with torch.no_grad():
        model.field_transform.copy_(torch.randn_like(model.field_transform))
    expected = torch.stack(
        [
            (left[:, i] @ model.field_transform[p] * right[:, j]).sum(-1)
            for p, (i, j) in enumerate(itertools.combinations(range(N), 2))
        ],
        1,
    )
    assert torch.allclose(model.interact(left, right), expected, atol=1e-5)


def test_pnn_products():
    torch.manual_seed(3)
    e = torch.randn(2, N, D)
    f_sum = e.sum(1)
    outer = build("OPNN").interact(e, e)
    assert torch.allclose(outer, torch.einsum("bd,be->bde", f_sum, f_sum).flatten(1), atol=1e-5)
    kpnn = build("KPNN", kernel_type="vec")  # kernels of ones: KPNN starts as IPNN
    assert torch.allclose(kpnn.interact(e, e), build("IPNN").interact(e, e), atol=1e-6)
    mat = build("KPNN", kernel_type="mat")
    expected = torch.stack(
        [
            torch.einsum("bd,de,be->b", e[:, i], mat.kernel[p], e[:, j])
            for p, (i, j) in enumerate(itertools.combinations(range(N), 2))
        ],
        1,
    )
    assert torch.allclose(mat.interact(e, e), expected, atol=1e-5)
    feature_map = fmap()
    model = build("IPNN", feature_map, hidden_units=[8])
    X = batch(feature_map, size=4)
    E = emb(model, X)
    assert model.dnn_input(E, model.interact(E, E)).shape == (4, N * D + P)


def test_dlrm_dense_vector_is_first_token():
    feature_map = fmap(numeric=True)
    model = build("DLRM", feature_map, bottom_mlp_units=[8, D], top_mlp_units=[8])
    X = model.get_inputs(batch(feature_map, size=5))
    dense = model.dense_vector(X)
    assert dense.shape == (5, D) and (dense >= 0).all()  # ReLU on the last bottom layer too
    tokens = model.tokens(X, dense)
    assert tokens.shape == (5, N + 1, D) and torch.equal(tokens[:, 0], dense)
    top = model.dnn_input(tokens, dense)
    assert torch.equal(top[:, :D], dense)
    assert torch.allclose(top[:, D : D + N], (tokens[:, :1] * tokens[:, 1:]).sum(-1))  # pairs (0, j) first


def test_gated_cross_layer_equation():
    from model_zoo.baselines.gdcn import GatedCrossNet

    torch.manual_seed(4)
    net = GatedCrossNet(6, 2)
    x0 = torch.randn(3, 6)
    x = x0
    for cross, gate in zip(net.cross, net.gates):
        x = x0 * (x @ cross.weight.T + cross.bias) * torch.sigmoid(x @ gate.weight.T) + x
    assert torch.allclose(net(x0), x, atol=1e-6)
    assert all(g.bias is None for g in net.gates)


def test_euler_layer_explicit_part_is_eulers_formula():
    """With identity orders and zero biases the explicit part returns its complex inputs."""
    from model_zoo.baselines.eulernet import EulerInteractionLayer

    torch.manual_seed(5)
    layer = EulerInteractionLayer(3, 3, 4)
    with torch.no_grad():
        layer.orders.copy_(torch.eye(3))
        layer.log_modulus_bias.zero_()
        layer.phase_bias.zero_()
    real, imag = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    ex_real, ex_imag = layer.explicit(real, imag)
    assert torch.allclose(ex_real, real, atol=1e-4) and torch.allclose(ex_imag, imag, atol=1e-4)
    with torch.no_grad():  # order 2 on field 0: z_0^2
        layer.orders.zero_()
        layer.orders[0, 0] = 2.0
    ex_real, ex_imag = layer.explicit(real, imag)
    square = torch.complex(real[:, 0], imag[:, 0]) ** 2
    assert torch.allclose(ex_real[:, 0], square.real, atol=1e-4)
    assert torch.allclose(ex_imag[:, 0], square.imag, atol=1e-4)
    model = build("EulerNet", order_list=[4])
    e = torch.randn(2, N, D)
    r, i = model.to_complex(e)
    assert torch.allclose(r.pow(2) + i.pow(2), torch.ones_like(r), atol=1e-6)  # modulus mu = 1 at init


def test_sam_modes_equations():
    torch.manual_seed(6)
    e = torch.randn(2, N, D)
    sam2e = build("SAM", interaction_type="SAM2E")
    out = sam2e.interact(e, e).view(2, N, N, D)
    i, j = 1, 3
    assert torch.allclose(
        out[:, i, j], (e[:, i] * e[:, j]).sum(-1, keepdim=True) * e[:, i] * e[:, j], atol=1e-5
    )
    sam3e = build("SAM", interaction_type="SAM3E", num_interaction_layers=1)
    key = sam3e.interaction_layers[0].key
    expected = sum((e[:, 0] * key(e[:, k])).sum(-1, keepdim=True) * e[:, 0] * e[:, k] for k in range(N))
    assert torch.allclose(sam3e.interact(e, e)[:, 0], expected, atol=1e-5)
    sam1 = build("SAM", interaction_type="SAM1", aggregation="weighted_pooling")
    assert torch.allclose(sam1.aggregate(sam1.interact(e, e)), e.sum(1), atol=1e-6)  # weights start at 1


TABLE = "embedding_layer.embedding_layer.embedding_layers.f1.weight"


@pytest.mark.parametrize(
    "over, std",
    [
        ({"interaction_type": "SAM1", "aggregation": "weighted_pooling"}, 1e-4),
        ({"interaction_type": "SAM2A"}, 1e-4),
        ({"interaction_type": "SAM3A", "num_interaction_layers": 1}, 1e-4),
        ({"interaction_type": "SAM3A", "use_residual": True, "num_interaction_layers": 3}, 1e-4),
        ({"interaction_type": "SAM3E", "use_residual": True, "num_interaction_layers": 3}, 1e-4),
        ({"interaction_type": "SAM2E"}, D**-0.5),  # order 4: unit expected norm
        ({"interaction_type": "SAM3E", "num_interaction_layers": 2}, D**-0.5),
        ({"interaction_type": "SAM3A", "num_interaction_layers": 3}, (N * D) ** -0.5),  # layer fixed point
        ({"interaction_type": "SAM2E", "embedding_initializer": "partial(nn.init.normal_, std=1e-2)"}, 1e-2),
    ],
)
def test_sam_embedding_init_per_mode(over, std):
    """fuxictr's N(0, 1e-4) where the output has a term of order <= 2; the higher-order modes start
    where they can train (sam.py's module doc); an explicit initializer wins."""
    torch.manual_seed(0)
    model = build("SAM", **over)
    measured = float(model.state_dict()[TABLE][1:].std())  # the per-field key of either layout
    assert 0.5 * std < measured < 1.6 * std


def test_sam2e_default_init_gives_distinct_predictions_and_trains():
    """From fuxictr's N(0, 1e-4), SAM2E's logits are equal to float32 resolution (AUC 0.5 exactly) and
    Adam barely moves it; from the default init its predictions differ and a planted signal is learnt."""
    torch.manual_seed(1)
    fm = fmap()
    X = batch(fm, size=256, seed=3)
    X["label"] = (X["f1"] % 2).float()  # the label is a function of one field
    for init, learns in (("partial(nn.init.normal_, std=1e-4)", False), (None, True)):
        torch.manual_seed(1)
        model = build("SAM", fm, interaction_type="SAM2E", embedding_initializer=init)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(60):
            optimizer.zero_grad()
            model.add_loss(model.forward(X), model.get_labels(X)).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = model.forward(X)["y_pred"].flatten()
        auc = roc_auc_score(X["label"].numpy(), pred.numpy())
        if learns:
            assert pred.std() > 1e-3 and auc > 0.95
        else:
            assert pred.std() < 1e-6


def test_eulernet_embedding_initializer_option():
    """EulerNet (embeddings as phases) can start from a wider init."""
    default = build("EulerNet", order_list=[4])
    wide = build("EulerNet", embedding_initializer="partial(nn.init.normal_, std=1e-2)", order_list=[4])
    std_default = default.state_dict()[TABLE][1:].std()
    std_wide = wide.state_dict()[TABLE][1:].std()
    assert std_default < 3e-4 and 3e-3 < std_wide < 3e-2


def test_wukong_fm_block_is_low_rank_fm():
    from model_zoo.baselines.wukong import FactorizationMachineBlock, LinearCompressionBlock

    torch.manual_seed(7)
    fmb = FactorizationMachineBlock(N, 2, D, rank=3)
    fmb.init_weights()
    x = torch.randn(2, N, D)
    assert torch.allclose(fmb.interact(x, x), x @ x.transpose(1, 2) @ fmb.projection, atol=1e-5)
    assert fmb(x).shape == (2, 2, D)
    lcb = LinearCompressionBlock(N, 3)
    assert torch.allclose(lcb(x), torch.einsum("on,bnd->bod", lcb.linear.weight, x), atol=1e-6)


def test_masknet_mask_and_layernorm():
    feature_map = fmap()
    model = build("MaskNet", feature_map, model_type="serial", serial_block_units=[8, 6])
    X = batch(feature_map, size=16)
    E = emb(model, X)
    normed = model.normalize_embedding(E).view(16, N, D)
    assert torch.allclose(normed.mean(-1), torch.zeros(16, N), atol=1e-4)  # LN of each field embedding
    block = model.blocks[1]
    hidden = torch.randn(16, 8)
    manual = torch.relu(block.norm(block.hidden(block.mask_generator(E.flatten(1)) * hidden)))
    assert torch.allclose(block(E.flatten(1), hidden), manual, atol=1e-6)
    assert block.mask_generator.mlp[0].out_features == 8  # reduction ratio 1: width 8
    assert block.hidden.bias is None  # no bias before LayerNorm


def test_finalmlp_gates_and_fusion():
    feature_map = fmap()
    model = build("FinalMLP", feature_map, mlp1_hidden_units=[8], mlp2_hidden_units=[6], num_heads=2)
    E = emb(model, batch(feature_map, size=4))
    x1, x2 = model.select_features(E)
    assert torch.allclose(x1, E.flatten(1)) and torch.allclose(x2, E.flatten(1))  # 2*sigmoid(0) = 1 at init
    fusion = model.fusion
    a, b = torch.randn(4, 8), torch.randn(4, 6)
    bil = sum(
        (a[:, 4 * h : 4 * h + 4] @ fusion.bilinear[h] * b[:, 3 * h : 3 * h + 3]).sum(-1) for h in range(2)
    )
    expected = fusion.linear_a(a) + fusion.linear_b(b) + bil.unsqueeze(-1)
    assert torch.allclose(fusion(a, b), expected, atol=1e-5)


def test_finalnet_layers_and_gate():
    from model_zoo.baselines.finalnet import FactorizedInteraction
    from model_zoo.layers.gates import FieldGate

    torch.manual_seed(8)
    x = torch.randn(3, 5)
    for residual in ("sum", "concat"):
        layer = FactorizedInteraction(5, 4, residual)
        h1, h2 = layer.linear(x).chunk(2, dim=-1)
        expected = h2 + h1 * h2 if residual == "sum" else torch.cat([h2, h1 * h2], -1)
        assert torch.allclose(layer(x), expected, atol=1e-6) and layer(x).shape == (3, 4)
    gate = FieldGate(N, "concat")
    gate.init_weights()
    e = torch.randn(2, N, D)
    assert torch.allclose(gate(e), torch.cat([e, e], 1))  # gates start at 1


def test_afm_without_attention_is_weighted_sum():
    feature_map = fmap()
    model = build("AFM", feature_map, use_attention=False)
    X = batch(feature_map, size=6)
    E = emb(model, X)
    pooled = sum(E[:, i] * E[:, j] for i, j in itertools.combinations(range(N), 2))
    expected = model.lr_layer(model.get_inputs(X)) + model.weight_p(pooled)
    model.eval()
    assert torch.allclose(model(X)["logit"], expected, atol=1e-6)
    attn = build("AFM", feature_map, attention_dim=4)
    products = attn.interact(E, E)
    weights = torch.softmax(attn.attention_score(attn.attention(products)), dim=1)
    assert torch.allclose(weights.sum(1), torch.ones(6, 1), atol=1e-6)


# --------------------------------------------------------------------------------------------------
# auxiliary losses come from tensors of the same forward pass


def test_cl4ctr_losses():
    from model_zoo.baselines.cl4ctr import alignment_loss, uniformity_loss

    torch.manual_seed(9)
    e = torch.randn(6, 3, 4)
    brute_align = torch.stack(
        [((e[:, None, f] - e[None, :, f]) ** 2).sum(-1).mean() for f in range(3)]
    ).mean()
    assert torch.allclose(alignment_loss(e), brute_align, atol=1e-5)
    unit = e / e.norm(dim=-1, keepdim=True)
    sims = [
        (unit[:, None, f] * unit[None, :, g]).sum(-1).mean() for f in range(3) for g in range(3) if f != g
    ]
    assert torch.allclose(uniformity_loss(e), torch.stack(sims).mean(), atol=1e-5)

    feature_map = fmap()
    model = build(
        "CL4CTR", feature_map, dnn_hidden_units=[8], cl_encoder_units=[6], cl_weight=1.0, cl_field_weight=0.5
    )
    X = batch(feature_map)
    y = model.get_labels(X)
    model.train()
    out = model(X)
    assert {"cl_view1", "cl_view2", "feature_emb"} <= set(out)
    bce = torch.nn.functional.binary_cross_entropy(out["y_pred"], y)
    cl = (out["cl_view1"] - out["cl_view2"]).pow(2).sum(-1).mean()
    field = alignment_loss(out["feature_emb"]) + uniformity_loss(out["feature_emb"])
    assert torch.allclose(model.add_loss(out, y), bce + cl + 0.5 * field, atol=1e-6)
    assert cl > 0  # the two views differ
    model.eval()
    assert set(model(X)) == {"y_pred", "logit"}  # no CM at inference


def test_finalnet_2b_block_losses():
    feature_map = fmap()
    model = build("FinalNet", feature_map, block_type="2B", block1_hidden_units=[8], block2_hidden_units=[8])
    X = batch(feature_map)
    y = model.get_labels(X)
    out = model(X)
    assert torch.allclose(out["logit"], 0.5 * (out["logit1"] + out["logit2"]))
    bce = torch.nn.functional.binary_cross_entropy
    expected = (
        bce(out["y_pred"], y) + bce(torch.sigmoid(out["logit1"]), y) + bce(torch.sigmoid(out["logit2"]), y)
    )
    assert torch.allclose(model.add_loss(out, y), expected, atol=1e-6)


def test_regularizer_sets_both_terms():
    model = build("FwFM", regularizer=1e-3)
    assert model._embedding_regularizer == 1e-3 and model._net_regularizer == 1e-3
    assert model.regularization_loss() > 0
