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
  attribute, of that exact type), so they are regularised as embeddings; ``CTRModel.regularization_loss``
  (``regularization_loss`` below) takes their (lambda/p)*||W||_p^p per field, the per-field tables' norms
  and gradients to the last bit, and the gradient clip (``field_tensors``) their norms in the per-field
  model's order: one norm over the concatenated table differs in its last bits, which Adam amplifies.
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


class _FieldNormTerm(torch.autograd.Function):
    """sum_f (lambda/p)*||W_f||_p^p over the per-field tables W_f that are consecutive row blocks of one or
    more 2-D tables (p = 1 or 2, fuxictr's regularisers). Each block's norm is ``torch.norm`` of that
    block alone; the backward follows autograd's chain for fuxictr's scalar term of each table (mul,
    pow, ``norm_backward``: ``grad * (w / norm)``, ``sgn(w) * grad`` for p = 1) element for element, for
    every block at once: the per-field tables' gradients to the last bit, in a few operators."""

    @staticmethod
    def forward(ctx, p: int, lam: float, sizes: tuple, rows: tuple, *weights):
        # sizes: each table's block rows (a list of ints); rows: the same as tensors on the tables' device
        blocks = [b for w, n in zip(weights, sizes) for b in w.split(n)]
        norms = torch.stack(torch._foreach_norm(blocks, p))
        ctx.save_for_backward(norms, *rows, *weights)
        ctx.p, ctx.lam, ctx.counts = p, lam, [len(n) for n in sizes]
        return (norms.pow(p) * (lam / p)).sum()

    @staticmethod
    def backward(ctx, grad):
        norms, *saved = ctx.saved_tensors
        k = len(ctx.counts)
        rows, weights = saved[:k], saved[k:]
        p = ctx.p
        g = (grad * (ctx.lam / p)).expand_as(norms)  # mul's backward
        if p == 2:  # pow's: g * (2 * norm ** 1)
            g = g * (2.0 * norms)
        # norm_backward's masked_fill at the blocks: a zero-norm block is all zeros, and w / 1 is w
        both = torch.stack([g, norms.masked_fill(norms == 0, 1)])
        grads, start = [], 0
        for w, r, count in zip(weights, rows, ctx.counts):
            part = both if count == both.shape[1] else both[:, start : start + count]
            start += count
            e = part.repeat_interleave(r, dim=1, output_size=w.shape[0]).unsqueeze(-1)
            grads.append(w.sgn() * e[0] if p == 1 else e[0] * (w / e[1]))
        return (None, None, None, None, *grads)


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
        block_rows = [m.num_embeddings for _, m, _ in tables]  # the regulariser's blocks (_FieldNormTerm)
        self.register_buffer("table_rows", torch.tensor(block_rows, dtype=torch.long), persistent=False)
        self.register_buffer("numeric_rows", torch.ones(len(numeric), dtype=torch.long), persistent=False)
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

    def field_norm_term(self, p: int, lam: float):
        """(lambda/p)*||W_f||_p^p summed over the per-field tables that the fused parameters of fuxictr's
        dict hold (``_FieldNormTerm``; None without any), and those parameters."""
        inner, weights, sizes, rows = self.embedding_layer, [], [], []
        blocks = ((FUSED, self.table_rows, [n for *_, n in self._tables]), (NUMERIC, self.numeric_rows, None))
        for name, r, n in blocks:
            weight = inner._parameters.get(name)
            if weight is not None and weight.requires_grad:
                weights.append(weight)
                sizes.append(n or [1] * weight.shape[0])
                rows.append(r)
        if not weights:
            return None, []
        return _FieldNormTerm.apply(p, lam, tuple(sizes), tuple(rows), *weights), weights

    def field_tensors(self, get) -> list[torch.Tensor]:
        """``get(p)`` for every parameter of fuxictr's per-field layer, in that layer's parameter order, with
        the fused tables split back into the per-field ones (views, so autograd flows to the fused
        parameters); entries where ``get`` gives None are left out. Norms over these are the per-field
        model's norms to the last bit (the regulariser's, the gradient clip's)."""
        inner = self.embedding_layer
        pieces: dict[str, torch.Tensor] = {}
        fused = get(getattr(inner, FUSED)) if FUSED in inner._parameters else None
        if fused is not None:
            pieces.update(
                zip([name for name, _, _ in self._tables], fused.split([n for *_, n in self._tables]))
            )
        numeric = get(getattr(inner, NUMERIC)) if NUMERIC in inner._parameters else None
        if numeric is not None:
            pieces.update(zip(self._numeric, numeric.unbind(0)))
        out, seen = [], set()
        modules = list(inner.embedding_layers.items())
        modules += [(None, m) for m in inner.feature_encoders.values()]
        for name, module in modules:
            if id(module) in seen:  # a shared table: listed once
                continue
            seen.add(id(module))
            if name in pieces:  # a fused field (the first of its table): its module holds no parameter
                out.append(pieces[name])
            for param in module.parameters():
                if id(param) not in seen and (t := get(param)) is not None:
                    seen.add(id(param))
                    out.append(t)
        return out

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


def per_field_tensors(model: nn.Module, get) -> list[torch.Tensor]:
    """``get(p)`` for the parameters of ``model`` in their order, each fused layer's block replaced by
    ``FusedFeatureEmbedding.field_tensors``: the tensors of the same model built with fuxictr's per-field
    layer, in its order (entries where ``get`` gives None left out)."""
    owner = {}
    for layer in model.modules():
        if isinstance(layer, FusedFeatureEmbedding):
            owner.update({id(p): layer for p in layer.embedding_layer.parameters()})
    out, done = [], set()
    for param in model.parameters():
        layer = owner.get(id(param))
        if layer is None:
            if (t := get(param)) is not None:
                out.append(t)
        elif id(layer) not in done:
            done.add(id(layer))
            out.extend(layer.field_tensors(get))
    return out


def regularization_loss(model: nn.Module, embedding_regularizer, net_regularizer):
    """fuxictr's ``BaseModel.regularization_loss`` for a model with fused tables: (lambda/p)*||W||_p^p of
    every table of a ``FeatureEmbeddingDict`` (embedding regulariser) and of every other parameter (net
    regulariser), with a fused parameter taken per field (``field_norm_term``), so each field's norm,
    and the gradient it gives, is the per-field model's to the last bit (one norm over the concatenated
    table differs in its last bits, which Adam amplifies into lr-sized steps)."""
    reg_term = 0
    if not (embedding_regularizer or net_regularizer):
        return reg_term
    emb_reg, net_reg = get_regularizer(embedding_regularizer), get_regularizer(net_regularizer)
    fused = {id(m.embedding_layer): m for m in model.modules() if isinstance(m, FusedFeatureEmbedding)}
    emb_params = set()
    for module in model.modules():
        if type(module) is not FeatureEmbeddingDict:  # fuxictr's test: the exact type
            continue
        params = [p for p in module.parameters() if p.requires_grad]
        emb_params.update(id(p) for p in params)
        for p, lam in emb_reg:
            covered = set()
            if id(module) in fused:
                term, weights = fused[id(module)].field_norm_term(p, lam)
                if term is not None:
                    reg_term = reg_term + term
                covered = {id(w) for w in weights}
            for param in params:
                if id(param) not in covered:
                    reg_term = reg_term + (lam / p) * torch.norm(param, p) ** p
    for param in model.parameters():
        if param.requires_grad and id(param) not in emb_params:
            for p, lam in net_reg:
                reg_term = reg_term + (lam / p) * torch.norm(param, p) ** p
    return reg_term
