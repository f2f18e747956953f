"""MaskFusion (Liao et al., ICLR 2023) on any zoo model with a DNN: ``MaskFusion_<Host>`` models.

One factory builds ``MaskFusion_<Host>`` as a subclass of the host (``MaskFusionMixin`` first in the
MRO), so the host's own code runs unchanged. Just before the host compiles (its ``finish()``), the
mixin

1. finds the host's DNN (``dnn``, else ``stacked_dnn``, else ``mlp``; or ``maskfusion.tower``) and
   replaces each of its linear layers by a ``FusedLinear`` reading [F_t ; a_{t-1}]. When the DNN has no
   output unit and the host predicts with a linear ``fc`` on it (DCN, DCNv2), ``fc`` is the DNN's output
   layer and is fused too (spec A7: fc(concat(cross, h)) = Linear(cross) + Linear(h));
2. adds a ``MaskFusionLayer`` (``mask_fusion``) fed by forward hooks on the modules that produce the
   field embeddings E: ``embedding_layer``, plus ``bottom_mlp`` (DLRM's dense vector) when the host has one;
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
      smooth_l0: {enabled: false, lambda: 1.0, lr: 0.006, momentum: 0.9, x_init: 1.0, eps_init: 0.1,
                  eps_decay: 0.999, eps_min: 0.0005, eps_decay_interval: 1, prune_threshold: 1.0e-6}
      dcn_controller: {mode: stacked, input: in}
    numeric_encoder: bottom_mlp    # or per_field (fuxictr's value x vector per numeric field)
    bottom_mlp_units: [512, 256, 64, 16]
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import logging
from collections import OrderedDict

import torch
from torch import nn
from fuxictr.pytorch.layers import MLP_Block
from fuxictr.pytorch.layers.embeddings.feature_embedding import FeatureEmbeddingDict

from benchmark.errors import CTRBenchError

from . import register_model
from .layers import MLP
from .layers.mask_fusion import (DCN_INPUTS, DCN_MODES, GRANULARITIES, MASK_TYPES, FusedLinear,
                                 MaskFusionLayer)

log = logging.getLogger("ctrbench.maskfusion")

DENSE_FIELD = "__dense__"
TOWER_ATTRS = ("dnn", "stacked_dnn", "mlp")
NUMERIC_ENCODERS = ("per_field", "bottom_mlp")

SMOOTH_L0_DEFAULTS = {"enabled": False, "lambda": 1.0, "lr": 0.006, "momentum": 0.9, "x_init": 1.0,
                      "eps_init": 0.1, "eps_decay": 0.999, "eps_min": 0.0005, "eps_decay_interval": 1,
                      "prune_threshold": 1.0e-6}
DCN_CONTROLLER_DEFAULTS = {"mode": "stacked", "input": "in"}
DEFAULTS = {"enabled": True, "mask_type": "adaptive", "granularity": "dimension",
            "generator_hidden_units": [512, 256], "generator_activation": "relu", "instance_norm": True,
            "in_eps": 1.0e-5, "fuse_first_layer": True, "fuse_head": "auto", "tower": "auto",
            "zero_init_generators": False, "return_masks": True,
            "smooth_l0": SMOOTH_L0_DEFAULTS, "dcn_controller": DCN_CONTROLLER_DEFAULTS}

# The paper's variants as config blocks (spec section 3); used by configs, tests and tables.
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
        raise CTRBenchError(f"{where} must be a mapping (e.g. {where}: {{enabled: true}}), got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise CTRBenchError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    out = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        out[key] = _merge(default, value, f"{where}.{key}") if isinstance(default, dict) else copy.deepcopy(value)
    return out


def parse_config(block, host: str = "model") -> dict:
    """The ``maskfusion:`` block merged over the defaults and checked; errors name the key."""
    cfg = _merge(DEFAULTS, block, "maskfusion")

    def choose(key, value, allowed):
        if value not in allowed:
            raise CTRBenchError(f"maskfusion.{key}={value!r} for {host}: use one of {', '.join(allowed)}")

    choose("mask_type", cfg["mask_type"], MASK_TYPES)
    choose("granularity", cfg["granularity"], GRANULARITIES)
    choose("dcn_controller.mode", cfg["dcn_controller"]["mode"], DCN_MODES)
    choose("dcn_controller.input", cfg["dcn_controller"]["input"], DCN_INPUTS)
    choose("fuse_head", cfg["fuse_head"], ("auto", True, False))
    units = cfg["generator_hidden_units"]
    if not isinstance(units, (list, tuple)) or not all(isinstance(u, int) and u > 0 for u in units):
        raise CTRBenchError(f"maskfusion.generator_hidden_units={units!r}: give a list of positive ints, "
                            f"e.g. [512, 256]")
    sl0 = cfg["smooth_l0"]
    for key in ("lambda", "lr", "momentum", "x_init", "eps_init", "eps_decay", "eps_min", "prune_threshold"):
        if not isinstance(sl0[key], (int, float)) or isinstance(sl0[key], bool):
            raise CTRBenchError(f"maskfusion.smooth_l0.{key}={sl0[key]!r} must be a number")
    if not 0 < sl0["eps_decay"] <= 1 or sl0["eps_min"] <= 0 or sl0["eps_init"] <= 0:
        raise CTRBenchError("maskfusion.smooth_l0: need eps_init > 0, eps_min > 0 and 0 < eps_decay <= 1")
    if not isinstance(sl0["eps_decay_interval"], int) or sl0["eps_decay_interval"] < 1:
        raise CTRBenchError("maskfusion.smooth_l0.eps_decay_interval must be a positive number of steps")
    if sl0["enabled"] and cfg["mask_type"] == "dcnv2":
        raise CTRBenchError("maskfusion.smooth_l0 works on the masked features (mask_type adaptive, static "
                            "or none), not on the dcnv2 controller")
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
                features[DENSE_FIELD] = {"source": spec.get("source", ""), "type": "embedding",
                                         "embedding_dim": int(embedding_dim), "pretrain_dim": len(numeric)}
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


class MaskFusionMixin:
    """Adds MaskFusion to the host class that follows it in the MRO (see the module docstring)."""

    host_class: type = None
    host_encodes_numerics: bool = False   # DLRM: the host's own bottom MLP makes the dense field

    def __init__(self, feature_map, maskfusion=None, numeric_encoder="per_field", **kwargs):
        host = self.host_class.__name__
        self.mf_config = parse_config(maskfusion, type(self).__name__)
        if numeric_encoder not in NUMERIC_ENCODERS:
            raise CTRBenchError(f"numeric_encoder={numeric_encoder!r} for {type(self).__name__}: use "
                                f"{' or '.join(NUMERIC_ENCODERS)}")
        embedding_dim = int(kwargs.get("embedding_dim", _host_default(self.host_class, "embedding_dim", 10)))
        kwargs["embedding_dim"] = embedding_dim
        self.mf_embedding_dim = embedding_dim
        self.mf_source_map = feature_map
        self.mf_numeric_fields: list[str] = []
        self.mf_bottom_units = None
        if numeric_encoder == "bottom_mlp" and not self.host_encodes_numerics:
            units = [int(u) for u in kwargs.pop("bottom_mlp_units", None) or [512, 256, 64, embedding_dim]]
            if units[-1] != embedding_dim:
                raise CTRBenchError(f"bottom_mlp_units={units} must end in embedding_dim={embedding_dim} "
                                    f"(the dense vector is one more field); e.g. [512, 256, 64, {embedding_dim}]")
            self.mf_bottom_units = units
            feature_map, self.mf_numeric_fields = dense_field_map(feature_map, embedding_dim)
        elif not self.host_encodes_numerics:
            kwargs.pop("bottom_mlp_units", None)   # per_field: nothing to build
        self.mf_hooks = []
        log.debug("MaskFusion on %s", host)
        super().__init__(feature_map, **kwargs)

    # ---- construction (runs inside the host's __init__, before compile) -------------------------
    def finish(self):
        self._install_dense_encoder()
        self._install_fusion()
        super().finish()

    def _install_dense_encoder(self):
        if not self.mf_numeric_fields:
            return
        n_num = len(self.mf_numeric_fields)
        for module in self.modules():
            if not isinstance(module, FeatureEmbeddingDict) or DENSE_FIELD not in module.embedding_layers:
                continue
            encoder = module.feature_encoders[DENSE_FIELD] if DENSE_FIELD in module.feature_encoders else None
            out_dim = encoder.out_features if isinstance(encoder, nn.Linear) else 1
            if out_dim == 1:   # first-order (LR) embedding: w . x over the raw numeric values
                module.feature_encoders[DENSE_FIELD] = nn.Linear(n_num, 1, bias=False)
            else:
                units = self.mf_bottom_units[:-1] + [out_dim]
                module.feature_encoders[DENSE_FIELD] = MLP(
                    n_num, hidden_units=units, hidden_activations=self.params.get("bottom_mlp_activations", "relu"),
                    activation_options=self.params)

    def _tower(self):
        name = self.mf_config["tower"]
        names = TOWER_ATTRS if name == "auto" else (name,)
        for attr in names:
            module = getattr(self, attr, None)
            if isinstance(module, MLP_Block):
                return attr, module
        raise CTRBenchError(f"{type(self).__name__}: MaskFusion needs the host's DNN, but "
                            f"{' / '.join(names)} is not an MLP here (is dnn_hidden_units empty?); "
                            f"set maskfusion.tower or give the host a DNN")

    def _embedding_sources(self) -> list[nn.Module]:
        sources = []
        bottom = getattr(self, "bottom_mlp", None)
        if isinstance(bottom, nn.Module):
            sources.append(bottom)
        emb = getattr(self, "embedding_layer", None)
        if isinstance(emb, nn.Module):
            sources.append(emb)
        if not sources:
            raise CTRBenchError(f"{type(self).__name__}: the host has no embedding_layer for MaskFusion to read")
        return sources

    def _num_fields(self, d: int) -> int:
        emb = getattr(self, "embedding_layer", None)
        n = 0
        if emb is not None:
            specs = emb.embedding_layer._feature_map.features
            fields = list(emb.embedding_layer.embedding_layers.keys())
            dims = {f: specs[f].get("embedding_dim", d) for f in fields}
            wrong = sorted(f for f, dim in dims.items() if int(dim) != d)
            if wrong:
                raise CTRBenchError(f"{type(self).__name__}: MaskFusion needs one embedding of size "
                                    f"embedding_dim={d} per field; {', '.join(wrong)} differ (feature_specs)")
            n += len(fields)
        if isinstance(getattr(self, "bottom_mlp", None), nn.Module):
            n += 1
        return n

    def _install_fusion(self):
        cfg = self.mf_config
        self.mask_fusion = None
        if not cfg["enabled"]:
            return
        d = self.mf_embedding_dim
        tower_name, tower = self._tower()
        seq = tower.mlp
        sites = [(seq, i) for i, m in enumerate(seq) if type(m) is nn.Linear]
        if not sites:
            raise CTRBenchError(f"{type(self).__name__}: the host's {tower_name} has no linear layer to fuse")
        head = getattr(self, "fc", None)
        head_ok = isinstance(head, nn.Linear) and type(head) is nn.Linear and head.out_features == 1
        last_out = seq[sites[-1][1]].out_features
        fuse_head = cfg["fuse_head"]
        if fuse_head == "auto":
            fuse_head = last_out != 1 and head_ok
        if fuse_head:
            if not head_ok:
                raise CTRBenchError(f"{type(self).__name__}: maskfusion.fuse_head needs a linear output layer "
                                    f"'fc' with one unit on the host")
            sites.append((self, "fc"))
        if not cfg["fuse_first_layer"]:
            sites = sites[1:]
        positions = len(sites)
        if positions == 0:
            raise CTRBenchError(f"{type(self).__name__}: nothing to fuse (one DNN layer and "
                                f"fuse_first_layer: false)")
        if positions == 1 and cfg["mask_type"] in ("static", "adaptive"):
            log.warning("%s: one fusion position, so the softmax across positions makes every mask 1",
                        type(self).__name__)
        n = self._num_fields(d)
        sl0 = cfg["smooth_l0"]
        smooth = None
        if sl0["enabled"]:
            smooth = {k: sl0[k] for k in ("x_init", "eps_init", "eps_decay", "eps_min", "prune_threshold")}
        self.mask_fusion = MaskFusionLayer(
            n, d, positions, mask_type=cfg["mask_type"], granularity=cfg["granularity"],
            generator_hidden_units=cfg["generator_hidden_units"], generator_activation=cfg["generator_activation"],
            instance_norm=cfg["instance_norm"], in_eps=cfg["in_eps"],
            zero_init_generators=cfg["zero_init_generators"], smooth_l0=smooth,
            dcn_mode=cfg["dcn_controller"]["mode"], dcn_input=cfg["dcn_controller"]["input"],
            activation_options=self.params)
        for position, (owner, key) in enumerate(sites):
            base = owner[key] if isinstance(owner, nn.Sequential) else getattr(owner, key)
            fused = FusedLinear(base, n * d, position, self.mask_fusion)
            if isinstance(owner, nn.Sequential):
                owner[key] = fused
            else:
                setattr(owner, key, fused)
        self.mf_tower = tower_name
        self.mf_positions = positions
        for source in self._embedding_sources():
            self.mf_hooks.append(source.register_forward_hook(self._capture_embedding))

    def _capture_embedding(self, module, inputs, output):
        if self.mask_fusion is not None and output is not None:
            self.mask_fusion.add_embedding(output)

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
            if spec["type"] == "meta":
                continue
            if spec["type"] == "numeric":
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
            log.info("SmoothL0: eps=%.3g, sparsity=%.2f%% of %d fused dimensions pruned", float(gate.eps),
                     100.0 * gate.sparsity(), gate.x.numel())
        return super().train(mode)

    def fusion_sparsity(self) -> float | None:
        """SmoothL0: pruned fused dimensions / (n*d); None without the gate."""
        gate = self.smooth_l0_gate
        return gate.sparsity() if gate is not None else None


# --------------------------------------------------------------------------------------------------
# The hosts (spec section 4) and the factory

HOSTS = {  # registry name of the host -> module of model_zoo defining it
    "DNN": "dnn", "IPNN": "pnn", "DeepFM": "deepfm", "xDeepFM": "xdeepfm", "DCN": "dcn", "DCNv2": "dcn",
    "AutoIntPlus": "autoint", "DLRM": "dlrm", "MaskNet": "masknet",
}
HOSTS_ENCODING_NUMERICS = {"DLRM"}


def maskfusion_class(host_cls: type, name: str | None = None) -> type:
    """Build (and register) ``MaskFusion_<Host>``: the host with MaskFusion on its DNN."""
    host = host_cls.__name__
    name = name or f"MaskFusion_{host}"
    doc = (f"MaskFusion (Liao et al., ICLR 2023) on {host}: instance-normalised embeddings fused into every "
           f"DNN layer with static/adaptive feature- or dimension-wise masks, DCNv2-type or SmoothL0 variants.\n\n"
           f"The host is model_zoo's {host}, unchanged except for its DNN layers; see model_zoo/maskfusion.py.")
    attrs = {"__doc__": doc, "__module__": __name__, "host_class": host_cls,
             "host_encodes_numerics": host in HOSTS_ENCODING_NUMERICS}
    return register_model(name=name)(type(name, (MaskFusionMixin, host_cls), attrs))


def _register_hosts() -> dict[str, type]:
    classes = {}
    for host, module_name in HOSTS.items():
        if importlib.util.find_spec(f"{__package__}.{module_name}") is None:
            continue
        module = importlib.import_module(f"{__package__}.{module_name}")
        host_cls = getattr(module, host, None)
        if host_cls is None:
            continue
        classes[host] = maskfusion_class(host_cls)
    return classes


MASKFUSION_CLASSES = _register_hosts()
