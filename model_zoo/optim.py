"""Row-wise optimisers for the fused embedding table (``embedding_optimizer``).

- ``dense`` (default): the table is one more parameter of the model's optimiser (the papers' protocol).
- ``sparse_adam``: ``torch.optim.SparseAdam`` on the table's sparse gradient: lazy Adam, whose moments and
  update touch only the rows the batch looked up.
- ``rowwise_adagrad``: ``RowwiseAdagrad`` below, one accumulator per row (FBGEMM's table-batched embedding
  and torchrec's ``EXACT_ROWWISE_ADAGRAD``): ``s_r += mean_d(g_r^2)``, ``w_r -= lr * g_r / (sqrt(s_r) + eps)``
  for the touched rows; its state is one number per row, 1/d of the table.

With either sparse optimiser the table's gradient is a sparse COO tensor of the batch's rows
(``FusedFeatureEmbedding(sparse=True)``), the embedding regulariser's gradient is added on those rows only
(not over the whole table as in the papers), and the rest of the model keeps its own (dense) optimiser.
"""

from __future__ import annotations

import torch

from .errors import ModelConfigError

EMBEDDING_OPTIMIZERS = ("dense", "sparse_adam", "rowwise_adagrad")


class RowwiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per row of a 2-D parameter, updating only the rows a sparse gradient
    holds (a dense gradient updates every row)."""

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-8, initial_accumulator_value: float = 0.0):
        if lr <= 0:
            raise ModelConfigError(f"rowwise_adagrad: learning_rate={lr} must be > 0")
        defaults = {"lr": lr, "eps": eps, "initial_accumulator_value": initial_accumulator_value}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ModelConfigError(
                        f"rowwise_adagrad: needs 2-D tables, got a {tuple(p.shape)} parameter"
                    )
                self.state[p]["sum"] = torch.full(
                    (p.shape[0],), initial_accumulator_value, dtype=p.dtype, device=p.device
                )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                acc = self.state[p]["sum"]
                if p.grad.is_sparse:
                    grad = p.grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                else:
                    rows, values = None, p.grad
                acc_rows = values.pow(2).mean(dim=1)
                if rows is None:
                    acc.add_(acc_rows)
                    p.addcdiv_(values, acc.sqrt().add_(group["eps"]).unsqueeze(1), value=-group["lr"])
                else:
                    acc.index_add_(0, rows, acc_rows)
                    step = values / (acc[rows].sqrt() + group["eps"]).unsqueeze(1)
                    p.index_add_(0, rows, step, alpha=-group["lr"])
        return loss


def check_embedding_optimizer(name) -> str:
    value = str(name).lower()
    if value not in EMBEDDING_OPTIMIZERS:
        raise ModelConfigError(
            f"embedding_optimizer={name!r} is not known; use one of {', '.join(EMBEDDING_OPTIMIZERS)}"
        )
    return value


def sparse_tables(model) -> list[torch.nn.Parameter]:
    """The fused tables with sparse gradients in ``model``."""
    from .layers.embedding import FusedFeatureEmbedding

    tables = []
    for module in model.modules():
        if isinstance(module, FusedFeatureEmbedding) and module.sparse:
            tables.extend(module.sparse_parameters())
    return tables


def split_optimizers(model, params, name, lr: float, net_regularizer=None):
    """(the parameters of the model's main optimiser, [the embedding optimiser]) for
    ``embedding_optimizer: name``; ``dense`` leaves ``params`` whole and adds no optimiser."""
    name = check_embedding_optimizer(name)
    params = list(params)
    if name == "dense":
        return params, []
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise ModelConfigError(
            f"embedding_optimizer: {name} is not supported under torchrun (the sparse table's row "
            f"gradients are not all-reduced across ranks here); use embedding_optimizer: dense"
        )
    if net_regularizer:
        raise ModelConfigError(
            f"embedding_optimizer: {name} with net_regularizer={net_regularizer}: fuxictr's regulariser "
            f"would add a dense gradient over the whole sparse table; set net_regularizer: 0"
        )
    tables = sparse_tables(model)
    if not tables:
        return params, []
    ids = {id(t) for t in tables}
    rest = [p for p in params if id(p) not in ids]
    if name == "sparse_adam":
        return rest, [torch.optim.SparseAdam(tables, lr=float(lr))]
    return rest, [RowwiseAdagrad(tables, lr=float(lr))]


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of tensors held in an optimiser's state."""
    return sum(
        v.numel() * v.element_size()
        for state in optimizer.state.values()
        for v in state.values()
        if torch.is_tensor(v) and v.dim() > 0
    )
