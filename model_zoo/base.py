"""``CTRModel``: fuxictr's ``BaseModel`` plus what every zoo model shares.

- losses by name from ``model_zoo.layers.losses`` (bce, focal_loss, r_ce_loss, ...),
- optimisers by ``torch.optim`` name, with ``aux_optimizers`` for parameter groups that a model
  trains with their own optimiser (the training loop steps all of them),
- ``finish()`` = compile + reset_parameters + move to device, the tail of every ``__init__``,
- ``output(logit, **extra)`` = the sigmoid head and the return dict of ``forward``.
"""

from __future__ import annotations

import torch
from fuxictr.pytorch.models import BaseModel

from .layers.losses import get_loss_fn
from .layers.mlp import MLP

_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad", "sgd": "SGD",
               "rmsprop": "RMSprop", "sparseadam": "SparseAdam"}


def make_optimizer(name, params, lr: float):
    from benchmark.errors import CTRBenchError

    if not isinstance(lr, (int, float)):
        raise CTRBenchError(f"learning_rate={lr!r} must be a number")
    cls_name = _OPTIMIZERS.get(str(name).lower(), str(name))
    cls = getattr(torch.optim, cls_name, None)
    if cls is None:
        raise CTRBenchError(f"unknown optimizer '{name}'; use a torch.optim name such as adam, adagrad, sgd")
    return cls(params, lr=float(lr))


def _regularizer(value):
    """fuxictr ignores int regularisers silently; read 1 as 1.0 and 0 as none."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return float(value) if value else 0
    return value


class CTRModel(BaseModel):
    """Base class of the zoo's models (not registered itself)."""

    def __init__(self, feature_map, model_id="CTRModel", gpu=-1, embedding_regularizer=None,
                 net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=_regularizer(embedding_regularizer),
                         net_regularizer=_regularizer(net_regularizer), **kwargs)
        self.params = kwargs
        self.aux_optimizers: list[torch.optim.Optimizer] = []

    # ---- construction -----------------------------------------------------------------------
    def main_parameters(self):
        """Parameters of the main optimiser; models with their own optimiser groups override this."""
        return self.parameters()

    def build_aux_optimizers(self) -> list:
        """Extra optimisers (e.g. MaskFusion's SmoothL0 gates); stepped by the training loop."""
        return []

    def compile(self, optimizer, loss, lr):
        self.optimizer = make_optimizer(optimizer, self.main_parameters(), lr)
        self.loss_fn = get_loss_fn(loss, **self.params)
        self.aux_optimizers = self.build_aux_optimizers()

    def finish(self):
        """Compile, initialise and move to the device; the last line of every model's __init__."""
        self.compile(self.params.get("optimizer", "adam"), self.params.get("loss", "binary_crossentropy"),
                     self.params.get("learning_rate", 1e-3))
        self.reset_parameters()
        self.model_to_device()

    def dnn_tower(self, hidden_units, activations="relu", dropout=0, batch_norm=False, options=None,
                  optional: bool = True):
        """The deep tower of two-stream models: an MLP on the flattened field embeddings with a 1-unit
        output (``options``: activation settings such as Mice's). ``None`` when ``hidden_units`` is empty
        and ``optional``; otherwise an empty list gives the plain linear map."""
        units = list(hidden_units or [])
        if not units and optional:
            return None
        return MLP(self.feature_map.sum_emb_out_dim(), hidden_units=units, hidden_activations=activations,
                   output_dim=1, dropout_rates=dropout, batch_norm=batch_norm, activation_options=options or {})

    # ---- forward helpers --------------------------------------------------------------------
    def embed(self, X):
        """Field embeddings, (B, F, d), of the model's ``embedding_layer``."""
        return self.embedding_layer(X)

    def output(self, logit, **extra):
        return {"y_pred": self.output_activation(logit), "logit": logit, **extra}

    def on_train_step_end(self, step: int) -> None:
        """Hook called by the training loop after each optimiser step (schedules, gates)."""
