"""Row-wise embedding optimisers: only the touched rows move, by a hand-computed update; state sizes;
the wiring into a model (the dense part keeps its optimiser) and its refusals."""

from __future__ import annotations

import pytest
import torch

from model_zoo import get_model_class
from model_zoo.errors import ModelConfigError
from model_zoo.layers.embedding import FusedFeatureEmbedding
from model_zoo.optim import RowwiseAdagrad, optimizer_state_bytes, split_optimizers
from model_zoo.testing import feature_map_from_vocab, model_kwargs

VOCAB = {"a": 6, "b": 5}


def layer(sparse=True, regularizer=None):
    torch.manual_seed(0)
    fm = feature_map_from_vocab(VOCAB, 4)
    return FusedFeatureEmbedding(fm, 4, sparse=sparse, regularizer=regularizer)


def batch():
    return {"a": torch.tensor([1, 1, 3, 0]), "b": torch.tensor([2, 4, 2, 2])}  # a=0 is padding


def touched_rows():
    return sorted({1, 3} | {6 + 2, 6 + 4})  # b's rows follow a's six


def test_sparse_gradient_holds_the_batch_rows_only():
    emb = layer()
    emb(batch()).pow(2).sum().backward()
    table = emb.sparse_parameters()[0]
    grad = table.grad.coalesce()
    assert grad.is_sparse
    assert grad.indices()[0].tolist() == touched_rows()  # no padding row (a=0 -> row 0)
    dense = layer(sparse=False)
    dense(batch()).pow(2).sum().backward()
    assert torch.equal(grad.to_dense(), dense.embedding_layer.fused_weight.grad)


def test_rowwise_adagrad_matches_the_hand_computed_update():
    emb = layer()
    table = emb.sparse_parameters()[0]
    before = table.detach().clone()
    opt = RowwiseAdagrad([table], lr=0.5, eps=1e-8)
    for _ in range(2):
        opt.zero_grad()
        emb(batch()).pow(2).sum().backward()
        g = table.grad.coalesce().to_dense()
        expected_acc = None
        opt.step()
    # by hand: two steps of s_r += mean(g_r^2); w_r -= lr g_r / (sqrt(s_r) + eps), on the touched rows
    w = before.clone()
    acc = torch.zeros(w.shape[0])
    for _ in range(2):
        e = torch.nn.functional.embedding(torch.stack([batch()["a"], batch()["b"] + 6], 1), w)
        g = torch.zeros_like(w)
        idx = torch.stack([batch()["a"], batch()["b"] + 6], 1).reshape(-1)
        g.index_add_(0, idx, (2 * e).reshape(-1, 4))
        g[0] = 0  # padding
        rows = torch.tensor(touched_rows())
        acc[rows] += g[rows].pow(2).mean(1)
        w[rows] -= 0.5 * g[rows] / (acc[rows].sqrt() + 1e-8).unsqueeze(1)
        expected_acc = acc
    assert torch.allclose(table.detach(), w, rtol=1e-6, atol=1e-9)
    untouched = [r for r in range(w.shape[0]) if r not in touched_rows()]
    assert torch.equal(table.detach()[untouched], before[untouched])
    assert torch.allclose(opt.state[table]["sum"], expected_acc)


def test_sparse_adam_moves_only_touched_rows():
    emb = layer()
    table = emb.sparse_parameters()[0]
    before = table.detach().clone()
    opt = torch.optim.SparseAdam([table], lr=0.1)
    opt.zero_grad()
    emb(batch()).sum().backward()
    opt.step()
    moved = (table.detach() != before).any(1).nonzero().flatten().tolist()
    assert moved == touched_rows()
    # lazy Adam's first step is lr * sign(g) on the touched entries
    g = table.grad.coalesce().to_dense()
    rows = touched_rows()
    assert torch.allclose(table.detach()[rows] - before[rows], -0.1 * g[rows].sign(), atol=1e-6)


def test_regulariser_applies_to_the_batch_rows():
    emb = layer(regularizer=0.5)
    table = emb.sparse_parameters()[0]
    emb(batch()).sum().backward()
    g = table.grad.coalesce().to_dense()
    plain = layer()
    plain(batch()).sum().backward()
    g0 = plain.sparse_parameters()[0].grad.coalesce().to_dense()
    rows = touched_rows()
    assert torch.allclose(g[rows] - g0[rows], 0.5 * table.detach()[rows], atol=1e-6)  # d/dw (0.5/2)||w||^2
    assert torch.equal(g[0], torch.zeros(4))  # rows not in the batch: no gradient at all


def test_state_sizes():
    emb = layer()
    table = emb.sparse_parameters()[0]
    emb(batch()).sum().backward()
    for opt, ratio in (
        (RowwiseAdagrad([table], lr=0.1), 1 / 4),
        (torch.optim.SparseAdam([table], lr=0.1), 2),
    ):
        opt.step()
        assert optimizer_state_bytes(opt) == pytest.approx(ratio * table.numel() * 4, abs=16)


@pytest.mark.parametrize(
    "name, cls", [("sparse_adam", torch.optim.SparseAdam), ("rowwise_adagrad", RowwiseAdagrad)]
)
def test_model_wiring(name, cls):
    fm = feature_map_from_vocab({"a": 9, "b": 7}, 4, numeric=["n"])
    model = get_model_class("DNN")(
        fm, **model_kwargs(embedding_optimizer=name, hidden_units=[8], embedding_dim=4)
    )
    opts = model.optimizers()
    assert [type(o) for o in opts] == [torch.optim.Adam, cls]
    table = opts[1].param_groups[0]["params"][0]
    assert all(p is not table for g in opts[0].param_groups for p in g["params"])
    n_main = sum(p.numel() for g in opts[0].param_groups for p in g["params"])
    assert n_main + table.numel() == model.count_parameters()
    X = {"a": torch.tensor([1, 2]), "b": torch.tensor([3, 3]), "n": torch.rand(2), "label": torch.ones(2)}
    before = table.detach().clone()
    for opt in opts:
        opt.zero_grad()
    model.compute_loss(model(X), model.get_labels(X)).backward()
    for opt in opts:
        opt.step()
    assert (table.detach() != before).any(1).nonzero().flatten().tolist() == [1, 2, 9 + 3]


def test_refusals():
    fm = feature_map_from_vocab({"a": 9}, 4)
    with pytest.raises(ModelConfigError, match="embedding_optimizer"):
        get_model_class("DNN")(fm, **model_kwargs(embedding_optimizer="lazy"))
    with pytest.raises(ModelConfigError, match="net_regularizer"):
        get_model_class("DNN")(fm, **model_kwargs(embedding_optimizer="sparse_adam", net_regularizer=1e-3))
    with pytest.raises(ModelConfigError, match="fused_embedding"):
        get_model_class("DNN")(fm, **model_kwargs(embedding_optimizer="sparse_adam", fused_embedding=False))
    params, extra = split_optimizers(torch.nn.Linear(2, 2), [], "dense", 1e-3)
    assert extra == []


def test_refused_under_torchrun(tmp_path):
    import torch.distributed as dist

    fm = feature_map_from_vocab({"a": 9}, 4)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        with pytest.raises(ModelConfigError, match="torchrun"):
            get_model_class("DNN")(fm, **model_kwargs(embedding_optimizer="rowwise_adagrad"))
        get_model_class("DNN")(fm, **model_kwargs(embedding_dim=4))  # dense: builds
    finally:
        dist.destroy_process_group()
