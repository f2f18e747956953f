"""MaskFusion (Liao et al., ICLR 2023) on nine zoo models with a DNN: ``MaskFusion_<Host>`` models.

``MaskFusion_<Host>`` is written out below for each host as ``class MaskFusion_DCN(MaskFusion, DCN)``
with its ``sites``: the one table of what is fused where. The host's own code runs unchanged; the
``MaskFusion`` base class composes three things onto it:

1. **the fused DNN** (``sites.towers``: the first of the named host towers that exists): while the host
   is built, just before it compiles, each linear layer of that tower becomes a ``FusedLinear`` reading
   [F_t ; a_{t-1}] (same module path, so checkpoints keep their keys). When the tower has no output unit
   and the host predicts with a linear ``fc`` on it (``sites.head``: DCN, DCNv2), ``fc`` is the DNN's
   output layer and is fused too (paper Sec. 3.2: fc(concat(cross, h)) = Linear(cross) + Linear(h));
2. **the mask fusion layer** (``mask_fusion``): it reads the field embeddings E that the host itself
   reads, through the two methods every host reads them with: ``embed`` (the field embeddings) and, for
   DLRM, ``dense_vector`` (its bottom MLP's dense field, which comes first);
3. optionally replaces the numeric fields by one DLRM-style dense field (``numeric_encoder: bottom_mlp``):
   the host is built on a feature map where the numeric columns are a single ``__dense__`` vector field
   whose encoder is a bottom MLP (ReLU on every layer, the last one giving embedding_dim), so the
   interaction layers see n = #categorical + 1 fields as in the paper; first-order LR terms read the raw
   numeric values through a linear encoder. DLRM already encodes numerics this way and is left as is.

Config (``maskfusion:`` block; ``enabled: false`` is the host's baseline, numerics included)::

    maskfusion:
      enabled: true
      mask_type: adaptive          # none (Fusion layer) | static (FwM) | adaptive | dcnv2
      granularity: dimension       # feature (FwMF) | dimension (DwMF)
      generator_hidden_units: [512, 256]
      generator_activation: relu
      instance_norm: true
      in_eps: 1.0e-5
      fuse_first_layer: true
      smooth_l0: {enabled: false, lambda: 0.22, lr: 0.006, momentum: 0.9, x_init: null, eps_init: 0.1,
                  eps_decay: 0.999, eps_min: 0.0005, eps_decay_interval: 1, prune_threshold: 1.0e-6}
      dcn_controller: {mode: stacked, input: in}
    numeric_encoder: bottom_mlp    # or per_field (fuxictr's value x vector per numeric field)
    bottom_mlp_units: [512, 256, 64, 16]
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections import OrderedDict
from dataclasses import dataclass

import torch
from fuxictr.pytorch.layers import MLP_Block
from fuxictr.pytorch.layers.embeddings.feature_embedding import FeatureEmbeddingDict
from torch import nn

from .. import register_model
from ..baselines.autoint import AutoIntPlus
from ..baselines.dcn import DCN, DCNv2
from ..baselines.deepfm import DeepFM
from ..baselines.dlrm import DLRM
from ..baselines.dnn import DNN
from ..baselines.masknet import MaskNet
from ..baselines.pnn import IPNN
from ..baselines.xdeepfm import xDeepFM
from ..errors import ModelConfigError
from ..layers import MLP
from ..options import check_choice
from .layers import DCN_INPUTS, DCN_MODES, FUSION_MASKS, GRANULARITIES, FusedLinear, MaskFusionLayer

log = logging.getLogger("ctrbench.maskfusion")

DENSE_FIELD = "__dense__"
NUMERIC_ENCODERS = ("per_field", "bottom_mlp")

SMOOTH_L0_DEFAULTS = {
    "enabled": False,
    "lambda": 0.22,  # calibrated on synth_criteo_1m (results/targets/maskfusion_table11.yaml)
    "lr": 0.006,
    "momentum": 0.9,
    "x_init": None,  # sqrt(eps_init), g = 1/2 at the start (docs/decisions.md, MaskFusion)
    "eps_init": 0.1,
    "eps_decay": 0.999,
    "eps_min": 0.0005,
    "eps_decay_interval": 1,
    "prune_threshold": 1.0e-6,
}
DCN_CONTROLLER_DEFAULTS = {"mode": "stacked", "input": "in"}
DEFAULTS = {
    "enabled": True,
    "mask_type": "adaptive",
    "granularity": "dimension",
    "generator_hidden_units": [512, 256],
    "generator_activation": "relu",
    "instance_norm": True,
    "in_eps": 1.0e-5,
    "fuse_first_layer": True,
    "fuse_head": "auto",
    "tower": "auto",
    "zero_init_generators": False,
    "return_masks": True,
    "smooth_l0": SMOOTH_L0_DEFAULTS,
    "dcn_controller": DCN_CONTROLLER_DEFAULTS,
}

# The paper's variants as config blocks (paper Sec. 4.4, Tables 9-12); used by configs, tests and tables.
VARIANTS = {
    "baseline": {"enabled": False},
    "fusion": {"mask_type": "none"},
    "static_fwm": {"mask_type": "static", "granularity": "feature"},
    "adaptive_fwmf": {"mask_type": "adaptive", "granularity": "feature"},
    "adaptive_dwmf": {"mask_type": "adaptive", "granularity": "dimension"},
    "smoothl0_fwmf": {"mask_type": "adaptive", "granularity": "feature", "smooth_l0": {"enabled": True}},
    "dcnv2_dwmf": {"mask_type": "dcnv2", "granularity": "dimension"},
}


def _merge(defaults: dict, given, where: str) -> dict:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ModelConfigError(f"{where} must be a mapping (e.g. {where}: {{enabled: true}}), got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ModelConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    out = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        nested = isinstance(default, dict)
        out[key] = _merge(default, value, f"{where}.{key}") if nested else copy.deepcopy(value)
    return out


def parse_config(block, host: str = "model") -> dict:
    """The ``maskfusion:`` block merged over the defaults and checked; errors name the key."""
    cfg = _merge(DEFAULTS, block, "maskfusion")

    def choose(key, value, allowed):
        check_choice(f"maskfusion.{key}", value, allowed, host)

    choose("mask_type", cfg["mask_type"], FUSION_MASKS)
    choose("granularity", cfg["granularity"], GRANULARITIES)
    choose("dcn_controller.mode", cfg["dcn_controller"]["mode"], DCN_MODES)
    choose("dcn_controller.input", cfg["dcn_controller"]["input"], DCN_INPUTS)
    choose("fuse_head", cfg["fuse_head"], ("auto", True, False))
    units = cfg["generator_hidden_units"]
    if not isinstance(units, (list, tuple)) or not all(isinstance(u, int) and u > 0 for u in units):
        raise ModelConfigError(
            f"maskfusion.generator_hidden_units={units!r}: give a list of positive ints, e.g. [512, 256]"
        )
    sl0 = cfg["smooth_l0"]
    for key in ("lambda", "lr", "momentum", "x_init", "eps_init", "eps_decay", "eps_min", "prune_threshold"):
        if key == "x_init" and sl0[key] is None:  # sqrt(eps_init): the gate starts at g = 1/2
            continue
        if not isinstance(sl0[key], (int, float)) or isinstance(sl0[key], bool):
            raise ModelConfigError(f"maskfusion.smooth_l0.{key}={sl0[key]!r} must be a number")
    if not 0 < sl0["eps_decay"] <= 1 or sl0["eps_min"] <= 0 or sl0["eps_init"] <= 0:
        raise ModelConfigError("maskfusion.smooth_l0: need eps_init > 0, eps_min > 0 and 0 < eps_decay <= 1")
    if not isinstance(sl0["eps_decay_interval"], int) or sl0["eps_decay_interval"] < 1:
        raise ModelConfigError("maskfusion.smooth_l0.eps_decay_interval must be a positive number of steps")
    if sl0["enabled"] and cfg["mask_type"] == "dcnv2":
        raise ModelConfigError(
            "maskfusion.smooth_l0 works on the masked features (mask_type adaptive, "
            "static "
            "or none), not on the dcnv2 controller"
        )
    return cfg


def dense_field_map(feature_map, embedding_dim: int):
    """A copy of ``feature_map`` whose numeric fields are one ``__dense__`` vector field (at the place of
    the first numeric field); returns (map, numeric field names). Unchanged without numeric fields."""
    numeric = [k for k, s in feature_map.features.items() if s["type"] == "numeric"]
    if not numeric:
        return feature_map, []
    proxy = copy.copy(feature_map)
    features = OrderedDict()
    for name, spec in feature_map.features.items():
        if spec["type"] == "numeric":
            if name == numeric[0]:
                features[DENSE_FIELD] = {
                    "source": spec.get("source", ""),
                    "type": "embedding",
                    "embedding_dim": int(embedding_dim),
                    "pretrain_dim": len(numeric),
                }
            continue
        features[name] = spec
    proxy.features = features
    proxy.num_fields = proxy.get_num_fields()
    return proxy, numeric


def _host_default(host_cls, name, fallback=None):
    for klass in host_cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        param = inspect.signature(init).parameters.get(name)
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return fallback


@dataclass(frozen=True)
class FusionSites:
    """Where MaskFusion goes on one host: the tower whose linear layers are fused (the first of
    ``towers`` that the host built), the host's output layer that completes a tower without an
    output unit (``head``), and whether the host encodes the numeric fields itself (DLRM)."""

    towers: tuple[str, ...]
    head: str | None = None
    encodes_numerics: bool = False


class MaskFusion:
    """MaskFusion composed onto the host class that follows it in the bases (see the module docstring)."""

    # the ``maskfusion:`` block's keys, so config resolution refuses a misspelt one with its source line
    config_schema = {"maskfusion": DEFAULTS}

    @classmethod
    def check_params(cls, params: dict) -> None:
        """The host's settings, the ``maskfusion:`` block and ``numeric_encoder``, checked before any data
        is built."""
        super().check_params(params)
        parse_config(params.get("maskfusion"), cls.__name__)
        check_choice(
            "numeric_encoder", params.get("numeric_encoder", "per_field"), NUMERIC_ENCODERS, cls.__name__
        )

    sites: FusionSites

    def __init__(self, feature_map, maskfusion=None, numeric_encoder="per_field", **kwargs):
        self.mf_config = parse_config(maskfusion, type(self).__name__)
        check_choice("numeric_encoder", numeric_encoder, NUMERIC_ENCODERS, type(self).__name__)
        embedding_dim = int(kwargs.get("embedding_dim", _host_default(type(self), "embedding_dim", 10)))
        kwargs["embedding_dim"] = embedding_dim
        self.mf_embedding_dim = embedding_dim
        self.mf_source_map = feature_map
        self.mf_numeric_fields: list[str] = []
        self.mf_bottom_units = None
        if numeric_encoder == "bottom_mlp" and not self.sites.encodes_numerics:
            units = [int(u) for u in kwargs.pop("bottom_mlp_units", None) or [512, 256, 64, embedding_dim]]
            if units[-1] != embedding_dim:
                raise ModelConfigError(
                    f"bottom_mlp_units={units} must end in embedding_dim={embedding_dim} "
                    f"(the dense vector is one more field); "
                    f"e.g. [512, 256, 64, {embedding_dim}]"
                )
            self.mf_bottom_units = units
            feature_map, self.mf_numeric_fields = dense_field_map(feature_map, embedding_dim)
        elif not self.sites.encodes_numerics:
            kwargs.pop("bottom_mlp_units", None)  # per_field: nothing to build
        super().__init__(feature_map, **kwargs)

    # ---- construction (runs at the end of the host's __init__, before compile and init) -----------
    def finish(self):
        self.mask_fusion = None
        self._build_dense_encoder()
        if self.mf_config["enabled"]:
            self._build_fusion()
        super().finish()

    def _build_dense_encoder(self):
        """numeric_encoder=bottom_mlp: the ``__dense__`` field's encoders (every embedding table of the
        host that has the field: a bottom MLP for embeddings, w . x for first-order LR terms)."""
        if not self.mf_numeric_fields:
            return
        n_num = len(self.mf_numeric_fields)
        for module in self.modules():
            if not isinstance(module, FeatureEmbeddingDict) or DENSE_FIELD not in module.embedding_layers:
                continue
            encoder = module.feature_encoders[DENSE_FIELD] if DENSE_FIELD in module.feature_encoders else None
            out_dim = encoder.out_features if isinstance(encoder, nn.Linear) else 1
            if out_dim == 1:
                module.feature_encoders[DENSE_FIELD] = nn.Linear(n_num, 1, bias=False)
            else:
                units = self.mf_bottom_units[:-1] + [out_dim]
                activations = self.params.get("bottom_mlp_activations", "relu")
                module.feature_encoders[DENSE_FIELD] = MLP(
                    n_num, hidden_units=units, hidden_activations=activations, activation_options=self.params
                )

    def _fused_tower(self) -> tuple[str, MLP_Block]:
        name = self.mf_config["tower"]
        names = self.sites.towers if name == "auto" else (name,)
        for attr in names:
            module = getattr(self, attr, None)
            if isinstance(module, MLP_Block):
                return attr, module
        raise ModelConfigError(
            f"{type(self).__name__}: MaskFusion needs the host's DNN, but "
            f"{' / '.join(names)} is not an MLP here (is dnn_hidden_units empty?); "
            f"set maskfusion.tower or give the host a DNN"
        )

    def _fusion_positions(self) -> list[tuple[nn.Module, int | str]]:
        """(owner, key) of every linear layer that reads a fused feature, in DNN order."""
        cfg = self.mf_config
        tower_name, tower = self._fused_tower()
        positions = [(tower.mlp, i) for i, m in enumerate(tower.mlp) if type(m) is nn.Linear]
        if not positions:
            raise ModelConfigError(
                f"{type(self).__name__}: the host's {tower_name} has no linear layer to fuse"
            )
        head_name = self.sites.head or "fc"
        head = getattr(self, head_name, None)
        head_ok = type(head) is nn.Linear and head.out_features == 1
        fuse_head = cfg["fuse_head"]
        if fuse_head == "auto":
            last_out = tower.mlp[positions[-1][1]].out_features
            fuse_head = self.sites.head is not None and head_ok and last_out != 1
        if fuse_head:
            if not head_ok:
                raise ModelConfigError(
                    f"{type(self).__name__}: maskfusion.fuse_head needs a linear output "
                    f"layer '{head_name}' with one unit on the host"
                )
            positions.append((self, head_name))
        if not cfg["fuse_first_layer"]:
            positions = positions[1:]
        if not positions:
            raise ModelConfigError(
                f"{type(self).__name__}: nothing to fuse (one DNN layer and fuse_first_layer: false)"
            )
        self.mf_tower = tower_name
        return positions

    def _num_fields(self, d: int) -> int:
        """n: the host's field embeddings (all of width d) plus DLRM's dense field."""
        specs = self.embedding_layer.embedding_layer._feature_map.features
        fields = list(self.embedding_layer.embedding_layer.embedding_layers.keys())
        wrong = sorted(f for f in fields if int(specs[f].get("embedding_dim", d)) != d)
        if wrong:
            raise ModelConfigError(
                f"{type(self).__name__}: MaskFusion needs one embedding of size "
                f"embedding_dim={d} per field; {', '.join(wrong)} differ (feature_specs)"
            )
        return len(fields) + (1 if isinstance(getattr(self, "bottom_mlp", None), nn.Module) else 0)

    def _build_fusion(self):
        cfg, d = self.mf_config, self.mf_embedding_dim
        positions = self._fusion_positions()
        if len(positions) == 1 and cfg["mask_type"] in ("static", "adaptive"):
            log.warning(
                "%s: one fusion position, so the softmax across positions makes every mask 1",
                type(self).__name__,
            )
        n = self._num_fields(d)
        sl0 = cfg["smooth_l0"]
        smooth = (
            {k: sl0[k] for k in ("x_init", "eps_init", "eps_decay", "eps_min", "prune_threshold")}
            if sl0["enabled"]
            else None
        )
        self.mask_fusion = MaskFusionLayer(
            n,
            d,
            len(positions),
            mask_type=cfg["mask_type"],
            granularity=cfg["granularity"],
            generator_hidden_units=cfg["generator_hidden_units"],
            generator_activation=cfg["generator_activation"],
            instance_norm=cfg["instance_norm"],
            in_eps=cfg["in_eps"],
            zero_init_generators=cfg["zero_init_generators"],
            smooth_l0=smooth,
            dcn_mode=cfg["dcn_controller"]["mode"],
            dcn_input=cfg["dcn_controller"]["input"],
            activation_options=self.params,
        )
        for position, (owner, key) in enumerate(positions):
            base = owner[key] if isinstance(owner, nn.Sequential) else getattr(owner, key)
            fused = FusedLinear(base, n * d, position, self.mask_fusion)
            if isinstance(owner, nn.Sequential):
                owner[key] = fused
            else:
                setattr(owner, key, fused)
        self.mf_positions = len(positions)

    # ---- the embeddings the host reads are the ones fused -----------------------------------------
    def embed(self, X, flatten: bool = False, layer: str = "embedding_layer"):
        emb = super().embed(X, flatten=flatten, layer=layer)
        if self.mask_fusion is not None and layer == "embedding_layer":
            self.mask_fusion.add_embedding(emb)
        return emb

    def dense_vector(self, X):  # DLRM's bottom MLP: the dense field, before the field embeddings
        dense = super().dense_vector(X)
        if self.mask_fusion is not None and dense is not None:
            self.mask_fusion.add_embedding(dense)
        return dense

    # ---- inputs, forward, loss ---------------------------------------------------------------
    def get_inputs(self, inputs, feature_source=None):
        if not self.mf_numeric_fields:
            return super().get_inputs(inputs, feature_source)
        source_specs = self.mf_source_map.features
        X, dense = {}, []
        for name, value in inputs.items():
            if name in self.mf_source_map.labels:
                continue
            spec = source_specs[name]
            if spec["type"] in ("meta", "numeric"):
                continue
            if feature_source and spec.get("source") not in feature_source:
                continue
            X[name] = value.to(self.device)
        for name in self.mf_numeric_fields:
            value = inputs[name]
            dense.append(value.float().reshape(value.shape[0], -1))
        X[DENSE_FIELD] = torch.cat(dense, dim=-1).to(self.device)
        return X

    def forward(self, inputs):
        if self.mask_fusion is None:
            return super().forward(inputs)
        self.mask_fusion.reset()
        out = super().forward(inputs)
        if self.mf_config["return_masks"] and self.mask_fusion.masks is not None:
            out["fusion_masks"] = self.mask_fusion.masks
        self.mask_fusion.reset()  # drop the batch's tensors
        return out

    @property
    def smooth_l0_gate(self):
        return self.mask_fusion.gate if self.mask_fusion is not None else None

    def add_loss(self, return_dict, y_true):
        loss = super().add_loss(return_dict, y_true)
        gate = self.smooth_l0_gate
        if gate is not None and self.training:
            loss = loss + float(self.mf_config["smooth_l0"]["lambda"]) * gate.penalty()
        return loss

    def main_parameters(self):
        gate = self.smooth_l0_gate
        if gate is None:
            return super().main_parameters()
        return [p for p in self.parameters() if p is not gate.x]

    def build_aux_optimizers(self) -> list:
        gate = self.smooth_l0_gate
        aux = list(super().build_aux_optimizers())
        if gate is not None:
            sl0 = self.mf_config["smooth_l0"]
            aux.append(torch.optim.SGD([gate.x], lr=float(sl0["lr"]), momentum=float(sl0["momentum"])))
        return aux

    def on_train_step_end(self, step: int) -> None:
        super().on_train_step_end(step)
        gate = self.smooth_l0_gate
        if gate is not None and (step + 1) % int(self.mf_config["smooth_l0"]["eps_decay_interval"]) == 0:
            gate.step()

    def train(self, mode: bool = True):
        """Switching to evaluation logs the SmoothL0 state (the run log keeps it for Table 11)."""
        gate = self.smooth_l0_gate if "mask_fusion" in self._modules else None
        if gate is not None and not mode and self.training:
            log.info(
                "SmoothL0: eps=%.3g, sparsity=%.2f%% of %d fused dimensions pruned",
                float(gate.eps),
                100.0 * gate.sparsity(),
                gate.x.numel(),
            )
        return super().train(mode)

    def fusion_sparsity(self) -> float | None:
        """SmoothL0: pruned fused dimensions / (n*d); None without the gate."""
        gate = self.smooth_l0_gate
        return gate.sparsity() if gate is not None else None


# --------------------------------------------------------------------------------------------------
# The nine hosts (paper Sec. 4.1): what is fused where

_DOC = (
    "MaskFusion (Liao et al., ICLR 2023) on {host}: instance-normalised embeddings fused into every DNN "
    "layer with static/adaptive feature- or dimension-wise masks, DCNv2-type or SmoothL0 variants."
)


# host -> (where it is fused, what its docstring adds)
HOST_SITES = {
    DNN: (FusionSites(towers=("mlp",)), ""),
    IPNN: (FusionSites(towers=("dnn",)), ""),
    DeepFM: (FusionSites(towers=("dnn",)), ""),
    xDeepFM: (FusionSites(towers=("dnn",)), ""),
    DCN: (
        FusionSites(towers=("dnn",), head="fc"),
        "The DNN has no output unit: fc on [cross ; h] is its fused output layer.",
    ),
    DCNv2: (
        FusionSites(towers=("dnn", "stacked_dnn"), head="fc"),
        "The parallel DNN (the stacked one for model_structure stacked), completed by fc as its fused output "
        "layer.",
    ),
    AutoIntPlus: (FusionSites(towers=("dnn",)), ""),
    DLRM: (
        FusionSites(towers=("dnn",), encodes_numerics=True),
        "The top MLP is fused; the bottom MLP's dense vector is field 1.",
    ),
    MaskNet: (FusionSites(towers=("dnn",)), ""),
}


def _host_class(host: type, sites: FusionSites, note: str) -> type:
    """``MaskFusion_<host>``: MaskFusion composed onto ``host``, fused at ``sites``, registered."""
    name = f"MaskFusion_{host.__name__}"
    namespace = {
        "__doc__": _DOC.format(host=host.__name__) + (f"\n\n{note}" if note else ""),
        "__module__": __name__,
        "__qualname__": name,
        "sites": sites,
    }
    return register_model(type(name, (MaskFusion, host), namespace))


MASKFUSION_CLASSES = {host.__name__: _host_class(host, *entry) for host, entry in HOST_SITES.items()}
globals().update({cls.__name__: cls for cls in MASKFUSION_CLASSES.values()})  # importable by name
HOSTS = tuple(MASKFUSION_CLASSES)
