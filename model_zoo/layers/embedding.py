"""``FusedFeatureEmbedding``: fuxictr's ``FeatureEmbedding`` with every categorical table in one parameter.

The layer is a drop-in for ``fuxictr.pytorch.layers.FeatureEmbedding`` (same constructor arguments, same
``forward(X, feature_source=[], feature_type=[], flatten_emb=False)`` and outputs) and is numerically the
same network:

- **Construction and initial values.** fuxictr's own ``FeatureEmbeddingDict`` is built first (so the random
  draws of construction are fuxictr's, in its order); then the tables of the categorical and sequence
  fields whose width is the layer's ``embedding_dim`` are concatenated, rows offset per field, into one
  parameter ``fused_weight``, and the numeric fields' ``Linear(1, d)`` weights into one ``numeric_weight``
  (n_numeric x d). The per-field modules stay in ``embedding_layers`` without parameters of their own;
  while ``reset_parameters`` runs (``apply``), their ``weight`` is a view of their rows, so fuxictr's
  ``init_weights`` (padding rows left at zero) and the xavier pass over ``nn.Linear`` draw every field's
  slice exactly as they draw its table, in the same order.
- **Forward.** One stack of the categorical ids, one add of the row offsets and one gather; the numeric
  fields as one broadcast product (``x * w`` is what ``Linear(1, d)`` computes, element for element).
- **Gradients.** The gather's backward is ``embedding_dense_backward`` with the padding rows of every field
  zeroed, as ``nn.Embedding(padding_idx=...)`` leaves them.
- **Regularisation.** Both parameters live on fuxictr's ``FeatureEmbeddingDict`` (the ``embedding_layer``
  attribute, of that exact type), so ``BaseModel.regularization_loss`` applies the embedding regulariser
  to them: (lambda/p)*||W||_p^p over the concatenated table is the per-table sum, in one norm.
- **Checkpoints.** ``state_dict`` writes fuxictr's per-field keys (``embedding_layer.embedding_layers.<field>
  .weight``) and ``load_state_dict`` reads them (or the fused keys), so a checkpoint moves both ways
  between this layer and fuxictr's.

Fields sharing a table (``share_embedding``) map to one slice. Pretrained fields, ``embedding``-type fields
and fields of another width keep their own modules and are looked up per field.

``FieldLogisticRegression`` is fuxictr's first-order ``LogisticRegression`` reading a 1-wide layer that the
model's factory built (so fused as well), with fuxictr's attributes, checkpoint keys and forward.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from fuxictr.pytorch.layers import LogisticRegression
from fuxictr.pytorch.layers.embeddings.feature_embedding import FeatureEmbedding, FeatureEmbeddingDict
from fuxictr.pytorch.torch_utils import get_regularizer
from fuxictr.utils import not_in_whitelist
from torch import nn

from ..errors import ModelConfigError

FUSED = "fused_weight"
NUMERIC = "numeric_weight"


class _Lookup(torch.autograd.Function):
    """``F.embedding`` whose backward leaves the padding rows at zero (dense), or drops the padding
    positions from the sparse COO gradient (``sparse=True``, for the row-wise optimisers)."""

    @staticmethod
    def forward(ctx, weight, idx, pad_rows, sparse: bool, regularizer: tuple):
        # the table itself only for the batch-row regulariser of the sparse path
        ctx.save_for_backward(weight if sparse and regularizer else None, idx, pad_rows)
        ctx.num_rows, ctx.sparse, ctx.regularizer = weight.shape[0], sparse, regularizer
        return F.embedding(idx, weight)

    @staticmethod
    def backward(ctx, grad):
        weight, idx, pad_rows = ctx.saved_tensors
        if ctx.sparse:  # one sort: the batch's unique rows, their summed gradients (coalesced already)
            rows, inverse = torch.unique(idx.reshape(-1), return_inverse=True)
            values = grad.new_zeros(rows.numel(), grad.shape[-1])
            values.index_add_(0, inverse, grad.reshape(inverse.numel(), -1))
            if pad_rows.numel():
                keep = ~torch.isin(rows, pad_rows)
                rows, values = rows[keep], values[keep]
            for p, lam in ctx.regularizer:  # d/dw of (lambda/p)*||w||_p^p on the batch's rows
                w = weight[rows]
                values = values + lam * (w if p == 2 else w.sign() * w.abs().pow(p - 1))
            size = (ctx.num_rows, values.shape[1])
            grad_weight = torch.sparse_coo_tensor(
                rows.unsqueeze(0), values, size, check_invariants=False, is_coalesced=True
            )
            return grad_weight, None, None, None, None
        g = torch.ops.aten.embedding_dense_backward(grad, idx, ctx.num_rows, -1, False)
        if pad_rows.numel():
            g.index_fill_(0, pad_rows, 0)
        return g, None, None, None, None


class FusedFeatureEmbedding(nn.Module):
    """fuxictr's ``FeatureEmbedding`` with one table for every categorical and sequence field (see the
    module docstring). ``sparse=True`` makes the table's gradient a sparse COO tensor of the batch's rows
    (``model_zoo.optim``'s row-wise optimisers): the table then lives on this module, outside fuxictr's
    ``FeatureEmbeddingDict``, so fuxictr's regulariser does not sweep it densely, and ``regularizer``
    (the model's ``embedding_regularizer``) is applied to the gradient of the looked-up rows instead."""

    def __init__(
        self,
        feature_map,
        embedding_dim,
        embedding_initializer="partial(nn.init.normal_, std=1e-4)",
        required_feature_columns=None,
        not_required_feature_columns=None,
        use_pretrain=True,
        use_sharing=True,
        sparse: bool = False,
        regularizer=None,
    ):
        super().__init__()
        self.embedding_layer = FeatureEmbeddingDict(
            feature_map,
            embedding_dim,
            embedding_initializer=embedding_initializer,
            required_feature_columns=required_feature_columns,
            not_required_feature_columns=not_required_feature_columns,
            use_pretrain=use_pretrain,
            use_sharing=use_sharing,
        )
        self.sparse = bool(sparse)
        self._regularizer = tuple(get_regularizer(regularizer)) if sparse and regularizer else ()
        self._fuse(feature_map)
        # partials, not bound methods: torch marks public-API hooks with an attribute
        for module in {id(m): m for m in (self.embedding_layer, self._table_owner())}.values():
            module.register_state_dict_post_hook(
                functools.partial(FusedFeatureEmbedding._per_field_state, self)
            )
            module.register_load_state_dict_pre_hook(
                functools.partial(FusedFeatureEmbedding._fused_state, self)
            )

    # ---- construction ---------------------------------------------------------------------------
    def _fuse(self, feature_map):
        inner = self.embedding_layer
        specs = feature_map.features
        layers = inner.embedding_layers
        width = None
        table_of: dict[str, tuple[int, int]] = {}  # field -> (offset, rows)
        tables: list[tuple[str, nn.Embedding, int]] = []  # (first field, module, offset)
        numeric: list[tuple[str, nn.Linear]] = []
        seen: dict[int, tuple[int, int]] = {}
        offset = 0
        for name, module in layers.items():
            kind = specs[name]["type"]
            if type(module) is nn.Embedding and kind in ("categorical", "sequence"):
                if width is None:
                    width = module.embedding_dim
                if module.embedding_dim != width or module.max_norm is not None or module.sparse:
                    continue
                if id(module) not in seen:
                    seen[id(module)] = (offset, module.num_embeddings)
                    tables.append((name, module, offset))
                    offset += module.num_embeddings
                table_of[name] = seen[id(module)]
            elif type(module) is nn.Linear and kind == "numeric" and module.bias is None:
                if module.in_features == 1 and (width is None or module.out_features == width):
                    width = module.out_features
                    numeric.append((name, module))
        self._width = width
        self._tables = [(name, off, module.num_embeddings) for name, module, off in tables]
        self._table_of = table_of
        self._numeric = [name for name, _ in numeric]
        pads = [off + m.padding_idx for _, m, off in tables if m.padding_idx is not None]
        self.register_buffer("pad_rows", torch.tensor(pads, dtype=torch.long), persistent=False)
        if tables:
            weight = torch.cat([m.weight.detach() for _, m, _ in tables], dim=0)
            self._table_owner().register_parameter(FUSED, nn.Parameter(weight))
            for _, module, _ in tables:
                del module._parameters["weight"]
        if numeric:
            weight = torch.cat([m.weight.detach().reshape(1, -1) for _, m in numeric], dim=0)
            inner.register_parameter(NUMERIC, nn.Parameter(weight))
            for _, module in numeric:
                del module._parameters["weight"]
        # The fast path: every field is a fused categorical one (no encoder) or a fused numeric one.
        encoders = inner.feature_encoders
        self._fields = list(layers.keys())
        self._cat = [f for f in self._fields if specs[f]["type"] == "categorical" and f in table_of]
        self._fast = all(
            f not in encoders and (f in self._cat or f in self._numeric) for f in self._fields
        ) and bool(self._fields)
        self.register_buffer(
            "cat_offsets",
            torch.tensor([table_of[f][0] for f in self._cat], dtype=torch.long),
            persistent=False,
        )
        # Stacking order [numeric..., categorical...] -> feature-map order.
        stacked = self._numeric + self._cat
        order = [stacked.index(f) for f in self._fields] if self._fast else []
        self._order = None if order == list(range(len(order))) else order
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)

    def _table_owner(self) -> nn.Module:
        """The module holding ``fused_weight``: fuxictr's dict (dense), this layer (sparse)."""
        return self if self.sparse else self.embedding_layer

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The tables whose gradients are sparse (for ``model_zoo.optim``)."""
        return [getattr(self, FUSED)] if self.sparse and self._tables else []

    # ---- views of the fused rows while fuxictr's initialisers run -------------------------------
    def _install_views(self):
        inner = self.embedding_layer
        if self._tables:
            weight = getattr(self._table_owner(), FUSED).detach()
            for name, (off, rows) in self._table_of.items():
                inner.embedding_layers[name].weight = weight[off : off + rows]
        if self._numeric:
            weight = getattr(inner, NUMERIC).detach()
            for k, name in enumerate(self._numeric):
                inner.embedding_layers[name].weight = weight[k].view(-1, 1)

    def _remove_views(self):
        layers = self.embedding_layer.embedding_layers
        for name in [*self._table_of, *self._numeric]:
            layers[name].__dict__.pop("weight", None)

    def apply(self, fn):
        """``Module.apply`` with each fused field's rows visible as its module's ``weight``, so
        ``BaseModel.reset_parameters`` initialises them as it would fuxictr's per-field modules."""
        self._install_views()
        try:
            return super().apply(fn)
        finally:
            self._remove_views()

    # ---- checkpoints in fuxictr's per-field layout ----------------------------------------------
    def _prefix(self, module, prefix: str) -> str:
        """The state-dict prefix of fuxictr's dict, from the prefix of ``module`` (the dict or this layer)."""
        return prefix if module is self.embedding_layer else prefix + "embedding_layer."

    def _per_field_state(self, module, state_dict, prefix, local_metadata):
        inner = self._prefix(module, prefix)
        fused = state_dict.pop(prefix + FUSED, None)
        if fused is not None:
            for name, (off, rows) in self._table_of.items():
                state_dict[f"{inner}embedding_layers.{name}.weight"] = fused[off : off + rows]
        numeric = state_dict.pop(prefix + NUMERIC, None)
        if numeric is not None:
            for k, name in enumerate(self._numeric):
                state_dict[f"{inner}embedding_layers.{name}.weight"] = numeric[k].view(-1, 1)

    def _fused_state(self, module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        key = f"{self._prefix(module, prefix)}embedding_layers.{{}}.weight".format
        groups = ((FUSED, list(self._table_of)), (NUMERIC, self._numeric))
        for param, fields in groups:
            if getattr(module, param, None) is None:
                continue
            if not fields or prefix + param in state_dict or not all(key(f) in state_dict for f in fields):
                continue
            per_field = {f: state_dict.pop(key(f)) for f in fields}
            if param == FUSED:
                parts = [per_field[name] for name, _, _ in self._tables]
            else:
                parts = [per_field[f].reshape(1, -1) for f in fields]
            state_dict[prefix + param] = torch.cat(parts, dim=0)

    # ---- forward ---------------------------------------------------------------------------------
    def _lookup(self, idx):
        weight = getattr(self._table_owner(), FUSED)
        return _Lookup.apply(weight, idx, self.pad_rows, self.sparse, self._regularizer)

    def _field(self, name, value):
        """One field's embedding (the slow path), as fuxictr's ``FeatureEmbeddingDict.forward``."""
        inner = self.embedding_layer
        kind = inner._feature_map.features[name]["type"]
        if name in self._table_of:
            emb = self._lookup(value.long() + self._table_of[name][0])
        elif name in self._numeric:
            w = getattr(inner, NUMERIC)
            emb = value.to(w.dtype).view(-1, 1) * w[self._numeric.index(name)]
        else:
            module = inner.embedding_layers[name]
            if kind == "numeric":
                emb = module(value.float().view(-1, 1))
            elif kind in ("categorical", "sequence"):
                emb = module(value.long())
            elif kind == "embedding":
                emb = module(value.float())
            else:
                raise NotImplementedError(kind)
        if name in inner.feature_encoders:
            emb = inner.feature_encoders[name](emb)
        return emb

    def forward(self, X, feature_source=[], feature_type=[], flatten_emb=False):  # noqa: B006 (fuxictr's)
        if self._fast and not feature_source and not feature_type and all(f in X for f in self._fields):
            parts = []
            if self._numeric:
                w = getattr(self.embedding_layer, NUMERIC)
                x = torch.stack([X[f] for f in self._numeric], dim=1).to(w.dtype)
                parts.append(x.unsqueeze(-1) * w)
            if self._cat:
                ids = torch.stack([X[f] for f in self._cat], dim=1) + self.cat_offsets
                parts.append(self._lookup(ids))
            emb = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            if self._order is not None:
                emb = emb.index_select(1, self.order)
            return emb.flatten(start_dim=1) if flatten_emb else emb
        inner = self.embedding_layer
        specs = inner._feature_map.features
        emb_dict = {}
        for name in X.keys():
            if name not in inner.embedding_layers:
                continue
            if feature_source and not_in_whitelist(specs[name]["source"], feature_source):
                continue
            if feature_type and not_in_whitelist(specs[name]["type"], feature_type):
                continue
            emb_dict[name] = self._field(name, X[name])
        return inner.dict2tensor(emb_dict, flatten_emb=flatten_emb)


def field_embedding_layer(
    feature_map,
    embedding_dim,
    embedding_initializer="partial(nn.init.normal_, std=1e-4)",
    required_feature_columns=None,
    not_required_feature_columns=None,
    use_pretrain=True,
    use_sharing=True,
    fused: bool = True,
    sparse: bool = False,
    regularizer=None,
) -> nn.Module:
    """The zoo's field-embedding layer: ``FusedFeatureEmbedding`` (``fused=True``, the default) or
    fuxictr's per-field ``FeatureEmbedding`` (``fused_embedding: false``); the same network either way."""
    kwargs = dict(
        embedding_initializer=embedding_initializer,
        required_feature_columns=required_feature_columns,
        not_required_feature_columns=not_required_feature_columns,
        use_pretrain=use_pretrain,
        use_sharing=use_sharing,
    )
    if not fused:
        if sparse:
            raise ModelConfigError(
                "a sparse embedding optimizer needs the fused embedding table; "
                "set fused_embedding: true or embedding_optimizer: dense"
            )
        return FeatureEmbedding(feature_map, embedding_dim, **kwargs)
    return FusedFeatureEmbedding(feature_map, embedding_dim, sparse=sparse, regularizer=regularizer, **kwargs)


class FieldLogisticRegression(LogisticRegression):
    """fuxictr's ``LogisticRegression`` (sum over the fields of each value's weight, plus an optional bias)
    whose 1-wide table is ``embedding_layer``, a layer built by the model's ``field_embedding(feature_map, 1,
    use_pretrain=False, use_sharing=False)`` as fuxictr builds its own; so the first-order weights are one
    fused table too (one lookup, one regulariser norm, the sparse optimisers' rows). fuxictr's attributes
    (``bias`` registered before ``embedding_layer``), checkpoint keys and ``forward``; the bias is zeros, so
    building the table first draws the same numbers as fuxictr's constructor."""

    def __init__(self, embedding_layer: nn.Module, use_bias: bool = True):
        nn.Module.__init__(self)  # fuxictr's __init__ would build a second, per-field table
        self.bias = nn.Parameter(torch.zeros(1)) if use_bias else None
        self.embedding_layer = embedding_layer
