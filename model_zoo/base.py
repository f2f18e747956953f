"""``CTRModel``: fuxictr's ``BaseModel`` plus what every zoo model shares.

- losses by name from ``model_zoo.layers.losses`` (bce, focal_loss, r_ce_loss, ...),
- optimisers by ``torch.optim`` name, with ``aux_optimizers`` for parameter groups that a model
  trains with their own optimiser (the training loop steps all of them),
- ``finish()`` = compile + reset_parameters + move to device, the tail of every ``__init__``,
- ``output(logit, **extra)`` = the sigmoid head and the return dict of ``forward``.
"""

from __future__ import annotations

import os

import torch
from fuxictr.pytorch.models import BaseModel
from torch import nn

from .errors import ModelConfigError
from .layers.embedding import (
    FieldLogisticRegression,
    FusedFeatureEmbedding,
    field_embedding_layer,
    per_field_tensors,
    regularization_loss,
)
from .layers.losses import get_loss_fn
from .layers.mlp import MLP
from .optim import check_embedding_optimizer, split_optimizers
from .options import check_choice, optimizer_class


def make_optimizer(name, params, lr: float):
    if not isinstance(lr, (int, float)):
        raise ModelConfigError(f"learning_rate={lr!r} must be a number")
    return optimizer_class(name)(params, lr=float(lr))


def count_parameters(model: nn.Module, count_embedding: bool = True) -> int:
    """Trainable parameters of any module (``count_embedding=False``: without those named embedding)."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if p.requires_grad and (count_embedding or "embedding" not in name)
    )


def _regularizer(value):
    """fuxictr ignores int regularisers silently; read 1 as 1.0 and 0 as none."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return float(value) if value else 0
    return value


def clip_grad_norm(parameters, max_norm: float) -> None:
    """torch's ``clip_grad_norm_`` (one 2-norm over every gradient), also over the sparse gradients a sparse
    ``embedding_optimizer`` gives its table (torch's norm kernels have no sparse version: their values count).
    ``parameters`` may be the model: its norm is then taken over the per-field tables of a fused layer, in
    the per-field model's order, so both layouts clip by the same factor to the last bit."""
    model = parameters if isinstance(parameters, nn.Module) else None
    params = [p for p in (model.parameters() if model is not None else parameters) if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        grads = per_field_tensors(model, lambda p: p.grad) if model is not None else [p.grad for p in params]
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, torch.nn.utils.get_total_norm(grads))
        return
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    norms = [torch.linalg.vector_norm(p.grad.values() if p.grad.is_sparse else p.grad) for p in params]
    coef = torch.clamp(max_norm / (torch.linalg.vector_norm(torch.stack(norms)) + 1e-6), max=1.0)
    for p in params:
        p.grad.mul_(coef)


class CTRModel(BaseModel):
    """Base class of the zoo's models (not registered itself)."""

    # Settings that take one of a few values (key -> the values): checked by ``check_params`` when a
    # config is resolved and by ``choose`` when the model is built, so both accept the same values.
    choices: dict[str, tuple] = {}

    @classmethod
    def check_params(cls, params: dict) -> None:
        """Check a resolved config's settings for this model before any data is built (config
        validation calls it); raises ``ModelConfigError`` naming the key. Checks ``choices``; models
        with settings blocks of their own (DLF, MaskFusion) extend it."""
        for key, allowed in cls.choices.items():
            if params.get(key) is not None:
                check_choice(key, params[key], allowed, cls.__name__)

    def choose(self, key: str, value):
        """``value`` of the setting ``key`` when it is one of ``choices[key]`` (else the error)."""
        return check_choice(key, value, self.choices[key], type(self).__name__)

    def __init__(
        self,
        feature_map,
        model_id="CTRModel",
        gpu=-1,
        embedding_regularizer=None,
        net_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            feature_map,
            model_id=model_id,
            gpu=gpu,
            embedding_regularizer=_regularizer(embedding_regularizer),
            net_regularizer=_regularizer(net_regularizer),
            **kwargs,
        )
        self.params = kwargs
        self.aux_optimizers: list[torch.optim.Optimizer] = []

    # ---- construction -----------------------------------------------------------------------
    def field_embedding(self, feature_map, embedding_dim, **options) -> nn.Module:
        """The field-embedding layer every model builds its tables with (``options``: fuxictr's
        ``FeatureEmbedding`` keyword arguments, ``embedding_initializer``, ``required_feature_columns``,
        ``not_required_feature_columns``, ``use_pretrain``, ``use_sharing``, with its defaults; and its
        interface: ``layer(X, flatten_emb=...)``). Models read it through ``embed``. By default one fused
        table (``layers.embedding.FusedFeatureEmbedding``, the same network); ``fused_embedding: false``
        builds fuxictr's per-field layer; a sparse ``embedding_optimizer`` gives the table sparse gradients
        (``model_zoo.optim``). The layer is ``layers.embedding.field_embedding_layer``'s."""
        return field_embedding_layer(
            feature_map,
            embedding_dim,
            fused=bool(self.params.get("fused_embedding", True)),
            sparse=check_embedding_optimizer(self.params.get("embedding_optimizer", "dense")) != "dense",
            regularizer=self._embedding_regularizer,
            **options,
        )

    def logistic_regression(self, feature_map, use_bias: bool = True) -> nn.Module:
        """The first-order term (fuxictr's ``LogisticRegression``: one weight per feature value, summed over
        the fields, plus an optional bias) on a 1-wide table from ``field_embedding``: fused like the
        model's own table, with fuxictr's checkpoint keys and initial values."""
        table = self.field_embedding(feature_map, 1, use_pretrain=False, use_sharing=False)
        return FieldLogisticRegression(table, use_bias=use_bias)

    def main_parameters(self):
        """Parameters of the main optimiser; models with their own optimiser groups override this."""
        return self.parameters()

    def build_aux_optimizers(self) -> list:
        """Extra optimisers (e.g. MaskFusion's SmoothL0 gates); stepped by the training loop."""
        return []

    def compile(self, optimizer, loss, lr):
        main, embedding = split_optimizers(
            self,
            self.main_parameters(),
            self.params.get("embedding_optimizer", "dense"),
            lr,
            self._net_regularizer,
        )
        self.optimizer = make_optimizer(optimizer, main, lr)
        self.loss_fn = get_loss_fn(loss, **self.params)
        self.aux_optimizers = [*self.build_aux_optimizers(), *embedding]

    def finish(self):
        """Compile, initialise and move to the device; the last line of every model's __init__."""
        self.compile(
            self.params.get("optimizer", "adam"),
            self.params.get("loss", "binary_crossentropy"),
            self.params.get("learning_rate", 1e-3),
        )
        self.reset_parameters()
        self.model_to_device()

    def dnn_tower(
        self,
        hidden_units,
        activations="relu",
        dropout=0,
        batch_norm=False,
        options=None,
        optional: bool = True,
        output_dim: int | None = 1,
        input_dim: int | None = None,
    ):
        """The zoo's deep tower: an MLP on the flattened field embeddings (or on ``input_dim`` inputs, for
        towers on other features), with a 1-unit output (``output_dim=None``: none, for the models that
        read the tower's last hidden layer through ``fc``; ``options``: activation settings such as
        Mice's, by default the model's own settings). ``None`` when ``hidden_units`` is empty and ``optional``; otherwise an empty list gives
        the plain linear map."""
        units = list(hidden_units or [])
        if not units and optional:
            return None
        return MLP(
            self.feature_map.sum_emb_out_dim() if input_dim is None else input_dim,
            hidden_units=units,
            hidden_activations=activations,
            output_dim=output_dim,
            dropout_rates=dropout,
            batch_norm=batch_norm,
            activation_options=self.params if options is None else options,
        )

    def tower_width(self, hidden_units) -> int:
        """Width of ``dnn_tower(hidden_units, output_dim=None)``'s output (0 without a tower)."""
        units = list(hidden_units or [])
        return int(units[-1]) if units else 0

    def cross_and_deep_logit(self, cross_out, x0):
        """``fc([cross_out ; dnn(x0)])``, the head of the parallel cross + DNN models (DCN, GDCN-P,
        IBNet); ``fc(cross_out)`` when the model has no DNN."""
        if self.dnn is None:
            return self.fc(cross_out)
        return self.fc(torch.cat([cross_out, self.dnn(x0)], dim=-1))

    # ---- forward helpers --------------------------------------------------------------------
    def embed(self, X, flatten: bool = False, layer: str = "embedding_layer"):
        """Field embeddings: (B, F, d), or (B, sum of widths) with ``flatten``. Every model reads its
        embeddings through this one method (MaskFusion taps it); ``layer`` names the embedding layer
        (a submodule path built by ``field_embedding``) for models with a second table, such as
        TF4CTR's easy table (``ssem.easy_embedding_layer``) or FmFM's ``linear_embedding``."""
        return self.get_submodule(layer)(X, flatten_emb=flatten)

    def output(self, logit, **extra):
        return {"y_pred": self.output_activation(logit), "logit": logit, **extra}

    def count_parameters(self, count_embedding: bool = True) -> int:
        """Trainable parameters; fuxictr's own method logs the same total but returns None."""
        return count_parameters(self, count_embedding)

    # ---- the training step: fuxictr's own fit and ctrbench's trainer step through these ----------
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimiser one training step steps: the main one, then ``aux_optimizers``."""
        return [self.optimizer, *self.aux_optimizers]

    def train_step(self, batch_data):
        """fuxictr's ``fit`` step, stepping every optimiser and calling ``on_train_step_end``.

        fuxictr's own ``train_step`` steps ``self.optimizer`` only, so under ``model.fit(...)`` a model's
        auxiliary optimisers (MaskFusion's SmoothL0 gate) would never train; this one keeps fuxictr's
        order (zero, forward, loss, backward, clip, step) for all of them.
        """
        for opt in self.optimizers():
            opt.zero_grad()
        return_dict = self.forward(batch_data)
        loss = self.compute_loss(return_dict, self.get_labels(batch_data))
        loss.backward()
        if self._max_gradient_norm and self._max_gradient_norm > 0:
            clip_grad_norm(self, self._max_gradient_norm)
        for opt in self.optimizers():
            opt.step()
        self.on_train_step_end(self._total_steps - 1)  # fit counts the step before running it
        return loss

    def regularization_loss(self):
        """fuxictr's, with a fused table's term taken per field (``layers.embedding.regularization_loss``:
        the per-field model's gradients to the last bit)."""
        if not any(isinstance(m, FusedFeatureEmbedding) for m in self.modules()):
            return super().regularization_loss()
        return regularization_loss(self, self._embedding_regularizer, self._net_regularizer)

    def save_weights(self, checkpoint):
        """fuxictr's save, creating the checkpoint's folder (``model_root/<dataset_id>``) first."""
        os.makedirs(os.path.dirname(os.path.abspath(checkpoint)), exist_ok=True)
        super().save_weights(checkpoint)

    def on_train_step_end(self, step: int) -> None:
        """Hook called after each optimiser step with the 0-based index of that step (schedules, gates);
        both fuxictr's ``fit`` (through ``train_step``) and ctrbench's trainer call it."""


class ParallelCrossModel(CTRModel):
    """Models whose logit is ``fc([crossnet(x0) ; dnn(x0)])`` on the flattened field embeddings x0 (DCN,
    GDCN-P): subclasses build ``crossnet``, an optional ``dnn`` (``dnn_tower``) and ``fc``."""

    def forward(self, inputs):
        x0 = self.embed(self.get_inputs(inputs), flatten=True)
        return self.output(self.cross_and_deep_logit(self.crossnet(x0), x0))


class ShallowDeepModel(CTRModel):
    """Models whose logit is ``shallow_logit(X, E) + deep_logit(E)`` over one field embedding E (DeepFM,
    xDeepFM, AutoInt): subclasses define ``shallow_logit`` and an optional ``dnn`` (``dnn_tower``)."""

    def shallow_logit(self, X, feature_emb):
        raise NotImplementedError

    def deep_logit(self, feature_emb):
        """The DNN on the flattened embeddings, (B, 1); zero when the model has no DNN."""
        if self.dnn is None:
            return feature_emb.new_zeros(feature_emb.shape[0], 1)
        return self.dnn(feature_emb.flatten(start_dim=1))

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embed(X)
        return self.output(self.shallow_logit(X, feature_emb) + self.deep_logit(feature_emb))
