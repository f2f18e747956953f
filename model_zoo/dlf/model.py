"""DLF (Wang et al., SIGIR 2025): stacked RLI layers (low-order, high-order and implicit blocks) with NAF fusion.

Each of the L layers maps the token matrix E^(l) (n_l tokens of width d) to E^(l+1):

- RLI blocks, each producing k tokens (the released code's block shapes, the only reading under which
  the paper's Eqs. 5-7 type-check):
  - low-order block  Z_L = MLP(LN(flatten(P_x0(E^(1)) . E^(l)^T W_L)))   (E^(1) token-projected to n_l);
  - high-order block Z_C = MLP(LN(flatten(E^(l) . E^(l)^T W_C)))         (W_* in R^{n_l x r});
  - implicit block   Z_D = token-mix of E^(l) (+ bias + ReLU in the paper form, linear in the code form);
  with an optional outer ReLU on Z_L / Z_C (paper Eqs. 5-6).
- NAF (Eqs. 10-14): ``BlockAttentionFusion`` of the blocks -> Att (k tokens); Z = [Z_L; Z_C; Z_D; Att].
- Gated residual (Eq. 9): E^(l+1) = LN(Z + P_res(max(eps, E^(l) W_gate^T) * E^(l))), P_res a token-axis
  map when n_l differs from the token count of Z (LayerNorm as in the released code; switchable).

The head is an MLP over the flattened E^(L+1) (the code's 512-unit BN head; ``head_hidden_units: []``
gives the paper's single linear layer), then a sigmoid; the loss is BCE.

Presets (every key can still be overridden): ``preset: paper`` (default) = RLI + NAF + gate with the paper's
outer ReLUs and dense implicit block; ``preset: release`` = the authors' released ``DLF`` class (a Wukong
layer plus a low-order block: no NAF, no gate, linear implicit block, no outer ReLU).
Table 3 ablations: ``use_gate: false`` (w/o gate), ``use_low_order_block: false`` + ``use_gate: false``
(w/o RLI), ``use_naf: false`` (w/o NAF; ``naf_ablation: late_fusion`` keeps three separate streams fused
only before the head instead of concatenating the blocks per layer), all three (w/o RLI + NAF).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers import MLP
from ..options import check_choice
from .block_fusion import BlockAttentionFusion, GatedResidual, TokenMix

PRESETS = {
    "paper": {
        "num_layers": 3,
        "block_tokens": 32,
        "rank": 24,
        "block_mlp_hidden_units": [512],
        "block_hidden_activations": "relu",
        "block_batch_norm": True,
        "block_layer_norm": True,
        "block_output_activation": "relu",
        "implicit_block": "dense_relu",
        "use_low_order_block": True,
        "use_naf": True,
        "naf_num_heads": 2,
        "naf_layers": 1,
        "naf_use_scale": True,
        "naf_dropout": 0.0,
        "naf_ablation": "concat",
        "use_gate": True,
        "gate_eps": 1e-6,
        "layer_norm": True,
        "head_hidden_units": [512],
        "head_hidden_activations": "relu",
        "head_batch_norm": True,
    },
}
PRESETS["release"] = dict(
    PRESETS["paper"], block_output_activation="none", implicit_block="linear", use_naf=False, use_gate=False
)
SETTINGS = tuple(PRESETS["paper"])
_CHOICES = {
    "block_output_activation": ("relu", "none"),
    "implicit_block": ("dense_relu", "linear"),
    "naf_ablation": ("concat", "late_fusion"),
}


def dlf_settings(preset: str = "paper", **given) -> dict:
    """The preset's settings with every non-None value of ``given`` on top, validated."""
    check_choice("preset", preset, tuple(PRESETS), "DLF")
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise ValueError(f"not DLF settings: {unknown}")
    cfg = dict(PRESETS[preset])
    cfg.update({k: v for k, v in given.items() if v is not None})
    for key, choices in _CHOICES.items():
        cfg[key] = check_choice(key, str(cfg[key]).lower(), choices, "DLF")
    for key in ("num_layers", "block_tokens", "rank", "naf_num_heads", "naf_layers"):
        if int(cfg[key]) < 1:
            raise ModelConfigError(f"DLF: {key}={cfg[key]} must be a positive integer")
    if cfg["naf_ablation"] == "late_fusion" and cfg["use_naf"]:
        raise ModelConfigError(
            "DLF: naf_ablation=late_fusion is the w/o-NAF ablation; also set use_naf: false"
        )
    return cfg


class InteractionBlock(nn.Module):
    """Explicit RLI block: ``S = A . X^T W`` (n x r) -> flatten -> LayerNorm -> MLP -> k tokens of width d.

    ``A = X`` gives the high-order block (order doubles per layer); ``A`` = the token-projected first-layer
    embeddings gives the low-order block (order grows by one per layer).
    """

    def __init__(
        self,
        n_in: int,
        dim: int,
        rank: int,
        tokens: int,
        hidden_units,
        hidden_activations="relu",
        batch_norm=True,
        dropout=0.0,
        layer_norm=True,
        output_activation="none",
        activation_options=None,
    ):
        super().__init__()
        self.tokens, self.dim = int(tokens), int(dim)
        self.compress = TokenMix(n_in, rank)  # W in R^{n x r}: (W^T X) = (X^T W)^T
        self.norm = nn.LayerNorm(n_in * rank) if layer_norm else nn.Identity()
        self.mlp = MLP(
            n_in * rank,
            hidden_units=hidden_units,
            hidden_activations=hidden_activations,
            output_dim=self.tokens * self.dim,
            dropout_rates=dropout,
            batch_norm=batch_norm,
            activation_options=activation_options,
        )
        self.activation = nn.ReLU() if output_activation == "relu" else None

    def forward(self, left, x):
        # The inner products and their LayerNorm stay in float32 under autocast: the norm subtracts the
        # products' common mean, a cancellation bf16 cannot afford (DLF_tiny's first training loss under
        # amp: bf16 was 1.6% off the fp32 one, 0.09% with this; tests/test_compile_bf16.py). At least
        # float32: a float64 model stays float64.
        dtype = torch.promote_types(left.dtype, torch.float32)
        with torch.autocast(left.device.type, enabled=False):
            s = torch.bmm(left.to(dtype), self.compress(x.to(dtype)).transpose(1, 2))  # (B, n, r)
            s = self.norm(s.flatten(1))
        z = self.mlp(s).view(-1, self.tokens, self.dim)
        return self.activation(z) if self.activation is not None else z


class DLFLayer(nn.Module):
    """One DLF layer over the blocks named in ``blocks`` (a subset of low / high / implicit, in that order)."""

    def __init__(
        self, blocks, num_fields: int, n_in: int, dim: int, cfg: dict, dropout=0.0, activation_options=None
    ):
        super().__init__()
        k, rank = int(cfg["block_tokens"]), int(cfg["rank"])
        self.blocks = tuple(blocks)
        explicit = dict(
            hidden_units=list(cfg["block_mlp_hidden_units"] or []),
            hidden_activations=cfg["block_hidden_activations"],
            batch_norm=bool(cfg["block_batch_norm"]),
            dropout=dropout,
            layer_norm=bool(cfg["block_layer_norm"]),
            output_activation=cfg["block_output_activation"],
            activation_options=activation_options,
        )
        self.x0_proj = None
        self.low = self.high = self.implicit = None
        if "low" in self.blocks:
            self.x0_proj = TokenMix(num_fields, n_in) if n_in != num_fields else None
            self.low = InteractionBlock(n_in, dim, rank, k, **explicit)
        if "high" in self.blocks:
            self.high = InteractionBlock(n_in, dim, rank, k, **explicit)
        if "implicit" in self.blocks:
            dense = cfg["implicit_block"] == "dense_relu"
            self.implicit = TokenMix(
                n_in, k, bias_dim=dim if dense else None, activation="relu" if dense else None
            )
        use_naf = bool(cfg["use_naf"]) and len(self.blocks) > 1
        self.naf = (
            BlockAttentionFusion(
                len(self.blocks),
                dim,
                int(cfg["naf_num_heads"]),
                int(cfg["naf_layers"]),
                bool(cfg["naf_use_scale"]),
                float(cfg["naf_dropout"]),
            )
            if use_naf
            else None
        )
        self.n_in = int(n_in)
        self.n_out = k * (len(self.blocks) + (1 if use_naf else 0))
        self.gate = GatedResidual(dim, float(cfg["gate_eps"])) if cfg["use_gate"] else None
        self.res_proj = TokenMix(n_in, self.n_out) if n_in != self.n_out else None
        self.norm = nn.LayerNorm(dim) if cfg["layer_norm"] else None

    def block_outputs(self, e, e1):
        """[Z_L, Z_C, Z_D] (those present), each (B, k, d)."""
        out = []
        if self.low is not None:
            out.append(self.low(self.x0_proj(e1) if self.x0_proj is not None else e1, e))
        if self.high is not None:
            out.append(self.high(e, e))
        if self.implicit is not None:
            out.append(self.implicit(e))
        return out

    def forward(self, e, e1):
        z = self.block_outputs(e, e1)
        if self.naf is not None:
            z.append(self.naf(z))
        z = torch.cat(z, dim=1)
        residual = self.gate(e) if self.gate is not None else e
        if self.res_proj is not None:
            residual = self.res_proj(residual)
        out = z + residual
        return self.norm(out) if self.norm is not None else out


@register_model
class DLF(CTRModel):
    """DLF (Wang et al., SIGIR 2025), paper form: RLI blocks + NAF attention fusion + gated residual per layer.

    ``preset: release`` gives the authors' released DLF class instead (no NAF, no gate); see the module docstring.
    """

    @classmethod
    def check_params(cls, params: dict) -> None:
        """The preset and the DLF settings a config gives, checked before any data is built."""
        super().check_params(params)
        dlf_settings(params.get("preset") or "paper", **{k: params[k] for k in SETTINGS if k in params})

    def __init__(
        self,
        feature_map,
        model_id="DLF",
        embedding_dim=64,
        preset="paper",
        net_dropout=0.0,
        num_layers=None,
        block_tokens=None,
        rank=None,
        block_mlp_hidden_units=None,
        block_hidden_activations=None,
        block_batch_norm=None,
        block_layer_norm=None,
        block_output_activation=None,
        implicit_block=None,
        use_low_order_block=None,
        use_naf=None,
        naf_num_heads=None,
        naf_layers=None,
        naf_use_scale=None,
        naf_dropout=None,
        naf_ablation=None,
        use_gate=None,
        gate_eps=None,
        layer_norm=None,
        head_hidden_units=None,
        head_hidden_activations=None,
        head_batch_norm=None,
        **kwargs,
    ):
        arguments = dict(locals())
        super().__init__(feature_map, model_id=model_id, **kwargs)
        given = {k: v for k, v in arguments.items() if k in SETTINGS}
        cfg = dlf_settings(preset, **given)
        if cfg["use_naf"] and embedding_dim % int(cfg["naf_num_heads"]):
            raise ModelConfigError(
                f"DLF: embedding_dim={embedding_dim} is not divisible by naf_num_heads="
                f"{cfg['naf_num_heads']}; change one of them"
            )
        self.settings = cfg
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        num_fields = feature_map.num_fields
        blocks = (["low"] if cfg["use_low_order_block"] else []) + ["high", "implicit"]
        if cfg["naf_ablation"] == "late_fusion":
            streams = [[b] for b in blocks]  # separate explicit/implicit streams, fused at the head
        else:
            streams = [blocks]
        self.streams = nn.ModuleList()
        head_tokens = 0
        for stream_blocks in streams:
            layers, n = nn.ModuleList(), num_fields
            for _ in range(int(cfg["num_layers"])):
                layers.append(DLFLayer(stream_blocks, num_fields, n, embedding_dim, cfg, net_dropout, kwargs))
                n = layers[-1].n_out
            self.streams.append(layers)
            head_tokens += n
        self.head = MLP(
            head_tokens * embedding_dim,
            hidden_units=list(cfg["head_hidden_units"] or []),
            hidden_activations=cfg["head_hidden_activations"],
            output_dim=1,
            dropout_rates=net_dropout,
            batch_norm=bool(cfg["head_batch_norm"]),
            activation_options=kwargs,
        )
        self.finish()

    def token_counts(self) -> list[list[int]]:
        """Tokens entering each layer and leaving the last one, per stream."""
        return [[layer.n_in for layer in stream] + [stream[-1].n_out] for stream in self.streams]

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        e1 = self.embed(X)
        outs = []
        for stream in self.streams:
            e = e1
            for layer in stream:
                e = layer(e, e1)
            outs.append(e)
        h = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        return self.output(self.head(h.flatten(1)))
