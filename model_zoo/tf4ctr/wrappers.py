"""TF4CTR on other base models (Li et al., arXiv 2405.03167): ``TF4CTRWrapper`` (the framework on a
base model's shallow part and DNN, Table V) and ``TwinFocusWrapper`` (the Twin Focus loss alone, Table II).
"""

from __future__ import annotations

import torch
from fuxictr.pytorch.layers import (
    CompressedInteractionNet,
    CrossNet,
    CrossNetMix,
    CrossNetV2,
    FactorizationMachine,
    InnerProductInteraction,
    LogisticRegression,
)
from torch import nn

from .. import get_model_class, register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers.embedding import FieldLogisticRegression
from .layers import SERSSEM, DynamicFusion, make_ssem, ssem_outputs
from .twin_focus import TwinFocusLoss, TwinFocusLossMixin

# how a base model's shallow part is called on (X, easy embedding of shape (B, F, d_e))
_SIMPLE_CALLS = {
    LogisticRegression: lambda part, X, emb: part(X),
    FieldLogisticRegression: lambda part, X, emb: part(X),  # the zoo's models' LR (a subclass)
    FactorizationMachine: lambda part, X, emb: part(X, emb),
    InnerProductInteraction: lambda part, X, emb: part(emb),
    CompressedInteractionNet: lambda part, X, emb: part(emb),
}
# shallow parts recognised when a config names none (``simple_parts`` / ``tf_simple_modules``)
_SHALLOW_TYPES = tuple(_SIMPLE_CALLS) + (CrossNet, CrossNetV2, CrossNetMix)


def build_base(base_model, feature_map, model_id, owner, **kwargs):
    """Instantiate the registered ``base_model`` with the wrapper's own config."""
    if not base_model:
        raise ModelConfigError(
            f"{owner}: set base_model to the registered model to wrap (e.g. base_model: DeepFM)"
        )
    cls = get_model_class(str(base_model))
    if issubclass(cls, (TF4CTRWrapper, TwinFocusWrapper)):
        raise ModelConfigError(
            f"{owner}: base_model={base_model} is itself a wrapper; name the underlying model"
        )
    return cls(feature_map, model_id=model_id, **kwargs)


def submodule(model, path: str, owner: str, key: str) -> nn.Module:
    module = model
    for name in str(path).split("."):
        module = getattr(module, name, None)
        if not isinstance(module, nn.Module):
            children = ", ".join(n for n, _ in model.named_children())
            raise ModelConfigError(
                f"{owner}: {key} names '{path}', which {type(model).__name__} does not have "
                f"as a module; its parts are: {children}"
            )
    return module


def shallow_children(model) -> list[str]:
    return [n for n, m in model.named_children() if isinstance(m, _SHALLOW_TYPES)]


def split_output_unit(mlp: nn.Module):
    """(hidden part, output Linear(., 1) or None, hidden width) of a zoo ``MLP``."""
    layers = list(mlp.mlp) if hasattr(mlp, "mlp") else list(mlp.children())
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if layers and isinstance(layers[-1], nn.Linear) and layers[-1].out_features == 1 and len(linears) > 1:
        return nn.Sequential(*layers[:-1]), layers[-1], layers[-1].in_features
    return mlp, None, linears[-1].out_features


@register_model
class TF4CTRWrapper(TwinFocusLossMixin, CTRModel):
    """TF4CTR framework on a base model (Li et al., arXiv 2405.03167, Table V): SSEM -> base's shallow part (simple) / DNN (complex) -> DFM + TF loss.

    One wrapper for every base built as ``embedding_layer`` + shallow modules + ``dnn`` (WideDeep,
    DeepFM, xDeepFM, ...): the base (``base_model``) is built from the same config, its embedding is
    replaced by the SSEM (``SSM``), its shallow modules (``simple_parts``; default: every LR / FM /
    inner-product / CIN child) form the simple encoder on the easy embedding, reshaped to (B, F, d_e),
    and its DNN's hidden layers the complex encoder on the hard one. The DNN's output unit is the
    complex logit head; the DFM (``DFM``) fuses, and the TF loss (``alpha``, ``c``, ``gamma``)
    supervises both heads. Modules in ``outside_parts`` add their logit to the fused one without TF
    supervision (the authors' xDeepFM variant keeps LR there). Options for the authors' variants:
    ``simple_bias`` (their FM carries an LR bias), ``simple_head: identity`` (WideDeep feeds the LR
    logit to WSF directly), ``cin_output_dim`` (their CIN projects to the DNN width instead of a logit).
    The FM term is computed on 3-D embeddings, i.e. correctly: the authors' DeepFM variant fed the
    flattened embedding, which collapses FM's second-order term to one constant per batch.
    """

    def __init__(
        self,
        feature_map,
        model_id="TF4CTRWrapper",
        base_model=None,
        embedding_dim=16,
        SSM="SER",
        DFM="WSF",
        easy_embedding_dim=None,
        simple_parts=None,
        outside_parts=None,
        simple_bias=False,
        simple_head="linear",
        cin_output_dim=None,
        alpha=0.25,
        c=0.8,
        gamma=1,
        tf_loss=True,
        tf_allow_any_c=False,
        vf_tau=0.8,
        vf_eval_noise=True,
        net_dropout=0.0,
        batch_norm=True,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        owner = f"{model_id} (TF4CTRWrapper on {base_model})"
        base = build_base(
            base_model,
            feature_map,
            model_id,
            owner,
            embedding_dim=embedding_dim,
            net_dropout=net_dropout,
            batch_norm=batch_norm,
            **kwargs,
        )
        self.base_name = str(base_model)
        self.ssem = make_ssem(
            SSM,
            self.field_embedding,
            feature_map,
            embedding_dim,
            model=owner,
            easy_embedding_dim=easy_embedding_dim,
            hidden_activations=kwargs.get("dnn_activations", "relu"),
            net_dropout=net_dropout,
            batch_norm=batch_norm,
        )
        self.num_fields = feature_map.num_fields
        # simple encoder: the base's shallow modules on the easy embedding
        names = (
            list(simple_parts)
            if simple_parts
            else [n for n in shallow_children(base) if n not in (outside_parts or [])]
        )
        if not names:
            raise ModelConfigError(
                f"{owner}: the base has no shallow module to use as the simple encoder; "
                f"name one with simple_parts"
            )
        self.simple_parts = nn.ModuleDict({n: submodule(base, n, owner, "simple_parts") for n in names})
        self.outside_parts = nn.ModuleDict(
            {n: submodule(base, n, owner, "outside_parts") for n in (outside_parts or [])}
        )
        widths = []
        for name, part in list(self.simple_parts.items()) + list(self.outside_parts.items()):
            if type(part) not in _SIMPLE_CALLS:
                raise ModelConfigError(
                    f"{owner}: part '{name}' is a {type(part).__name__}; the simple encoder "
                    f"takes {', '.join(t.__name__ for t in _SIMPLE_CALLS)}"
                )
            if isinstance(part, CompressedInteractionNet) and cin_output_dim and name in self.simple_parts:
                part.fc = nn.Linear(part.fc.in_features, int(cin_output_dim))
            if isinstance(part, InnerProductInteraction) and part._output_type != "product_sum":
                raise ModelConfigError(f"{owner}: part '{name}' must output a logit (product_sum)")
            width = part.fc.out_features if isinstance(part, CompressedInteractionNet) else 1
            if name in self.simple_parts:
                widths.append(width)
            elif width != 1:
                raise ModelConfigError(f"{owner}: outside part '{name}' must output a logit")
        if len(set(widths)) != 1:
            raise ModelConfigError(
                f"{owner}: simple_parts {names} give outputs of widths {widths}; move the "
                f"logit-valued ones to outside_parts"
            )
        simple_dim = widths[0]
        needs_3d = any(not isinstance(p, LogisticRegression) for p in self.simple_parts.values())
        if not needs_3d and isinstance(self.ssem, SERSSEM):
            raise ModelConfigError(
                f"{owner}: SSM=SER builds an easy embedding table that the simple encoder "
                f"{names} never reads (LR uses raw ids); use SSM: share (the authors' WideDeep "
                f"variant has no SSEM)"
            )
        if needs_3d and self.ssem.easy_dim != self.num_fields * self.ssem.easy_field_dim:
            raise ModelConfigError(
                f"{owner}: the simple encoder needs one embedding of equal size per field; "
                f"remove per-feature embedding_dim overrides"
            )
        self.simple_bias = nn.Parameter(torch.zeros(1)) if simple_bias else None
        # complex encoder: the base's DNN, its output unit as the complex head
        dnn = getattr(base, "dnn", None)
        if not isinstance(dnn, nn.Module):
            raise ModelConfigError(
                f"{owner}: the base has no DNN (attribute dnn) for the complex encoder; "
                f"give it dnn_hidden_units"
            )
        self.mlp_c, complex_head, complex_dim = split_output_unit(dnn)
        first = next(m for m in self.mlp_c.modules() if isinstance(m, nn.Linear))
        if first.in_features != self.ssem.hard_dim:
            raise ModelConfigError(
                f"{owner}: the base DNN reads {first.in_features} inputs but the hard embedding "
                f"has {self.ssem.hard_dim}; keep the base's embedding_dim"
            )
        head = str(simple_head).lower()
        if head not in ("linear", "identity") or (head == "identity" and simple_dim != 1):
            raise ModelConfigError(
                f"{owner}: simple_head={simple_head!r}; use linear, or identity when the simple "
                f"encoder outputs a logit"
            )
        self.dfm = DynamicFusion(
            DFM,
            simple_dim,
            complex_dim,
            vf_tau=vf_tau,
            vf_eval_noise=vf_eval_noise,
            simple_head=nn.Identity() if head == "identity" else None,
            complex_head=complex_head,
            model=owner,
        )
        self.twin_focus = TwinFocusLoss(alpha, c, gamma, tf_allow_any_c, source=owner) if tf_loss else None
        del base
        self.finish()

    def simple_encoder(self, X, h_es):
        emb = h_es.view(h_es.shape[0], self.num_fields, -1)
        out = sum(_SIMPLE_CALLS[type(p)](p, X, emb) for p in self.simple_parts.values())
        return out + self.simple_bias if self.simple_bias is not None else out

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        h_es, h_hs = ssem_outputs(self, X)
        z, z_s, z_c = self.dfm(self.simple_encoder(X, h_es), self.mlp_c(h_hs))
        if len(self.outside_parts):
            emb = h_es.view(h_es.shape[0], self.num_fields, -1)
            z = z + sum(_SIMPLE_CALLS[type(p)](p, X, emb) for p in self.outside_parts.values())
        return self.output(z, logit_simple=z_s, logit_complex=z_c)


def dummy_batch(feature_map, n: int = 2) -> dict:
    """A valid batch of ``n`` rows (index 1 everywhere) to size a base model's branch outputs."""
    batch = {}
    for name, spec in feature_map.features.items():
        kind = spec["type"]
        if kind == "numeric":
            batch[name] = torch.zeros(n)
        elif kind == "sequence":
            batch[name] = torch.ones(n, int(spec.get("max_len") or 1), dtype=torch.long)
        elif kind == "embedding":
            batch[name] = torch.zeros(n, int(spec.get("pretrain_dim", spec.get("embedding_dim", 1))))
        else:
            batch[name] = torch.ones(n, dtype=torch.long)
    for label in feature_map.labels:
        batch[label] = torch.zeros(n)
    return batch


@register_model
class TwinFocusWrapper(CTRModel):
    """Twin Focus loss alone on a base model (Li et al., arXiv 2405.03167, Table II): base forward unchanged, + TF loss on its two branches.

    The base (``base_model``) is built from the same config and its prediction is kept as is. Forward
    hooks read the outputs of the explicit branch (``tf_simple_modules``; default: the base's LR / FM /
    inner-product / CIN / cross-network children, summed) and of the implicit one
    (``tf_complex_modules``, default ``[dnn]``) during that one forward pass; a branch that already
    yields a logit is used as is (DeepFM, AutoInt+, AFN+), a wider one gets a Linear(., 1) head
    (DCN, DCNv2). Loss = the base's own loss + alpha L_simple + (1 - alpha) L_complex.
    """

    def __init__(
        self,
        feature_map,
        model_id="TwinFocusWrapper",
        base_model=None,
        tf_simple_modules=None,
        tf_complex_modules=("dnn",),
        alpha=0.25,
        c=0.8,
        gamma=1,
        tf_allow_any_c=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        owner = f"{model_id} (TwinFocusWrapper on {base_model})"
        self.base = build_base(base_model, feature_map, model_id, owner, **kwargs)
        simple = list(tf_simple_modules or shallow_children(self.base))
        complex_ = list(tf_complex_modules or [])
        if not simple or not complex_:
            raise ModelConfigError(
                f"{owner}: name the explicit and implicit branches with tf_simple_modules and "
                f"tf_complex_modules (modules of the base: "
                f"{', '.join(n for n, _ in self.base.named_children())})"
            )
        self._captured: dict[str, list] = {"simple": [], "complex": []}
        self._hooks = []
        for branch, names in (("simple", simple), ("complex", complex_)):
            for name in names:
                module = submodule(self.base, name, owner, f"tf_{branch}_modules")
                self._hooks.append(module.register_forward_hook(self._capture(branch)))
        widths = self._branch_widths(feature_map)
        self.simple_head = nn.Linear(widths["simple"], 1) if widths["simple"] != 1 else nn.Identity()
        self.complex_head = nn.Linear(widths["complex"], 1) if widths["complex"] != 1 else nn.Identity()
        self.twin_focus = TwinFocusLoss(alpha, c, gamma, tf_allow_any_c, source=owner)
        self.finish()

    def _capture(self, branch):
        def hook(module, inputs, output):
            self._captured[branch].append(output)

        return hook

    def _branch(self, branch):
        outs = [o.flatten(start_dim=1) for o in self._captured[branch]]
        self._captured[branch] = []
        if not outs:
            raise ModelConfigError(
                f"{self.model_id}: the {branch} branch modules were not called by "
                f"{type(self.base).__name__}.forward; check tf_{branch}_modules"
            )
        widths = {o.shape[-1] for o in outs}
        if len(widths) > 1:
            raise ModelConfigError(
                f"{self.model_id}: the {branch} branch modules give outputs of widths "
                f"{sorted(widths)}; list modules of one width in tf_{branch}_modules"
            )
        return sum(outs)

    def _branch_widths(self, feature_map) -> dict:
        was_training = self.base.training
        self.base.eval()
        with torch.no_grad():
            self.base(dummy_batch(feature_map))
            widths = {b: self._branch(b).shape[-1] for b in ("simple", "complex")}
        self.base.train(was_training)
        return widths

    def main_parameters(self):
        aux = {id(p) for opt in self.base.aux_optimizers for g in opt.param_groups for p in g["params"]}
        return [p for p in self.parameters() if id(p) not in aux]

    def build_aux_optimizers(self):
        return self.base.build_aux_optimizers()

    def on_train_step_end(self, step):
        self.base.on_train_step_end(step)

    def forward(self, inputs):
        out = dict(self.base(inputs))
        out["logit_simple"] = self.simple_head(self._branch("simple"))
        out["logit_complex"] = self.complex_head(self._branch("complex"))
        return out

    def add_loss(self, return_dict, y_true):
        return self.base.add_loss(return_dict, y_true) + self.twin_focus(
            return_dict["logit_simple"], return_dict["logit_complex"], y_true
        )
