"""Closed-form parameter counts of the zoo's building blocks: the tests' independent oracles.

Each function counts what a layer should hold from the paper's (or fuxictr's) formula, written apart
from the layer's code, so a test comparing the two can fail when either changes.
"""

from __future__ import annotations

import math


# ---- shared blocks (model_zoo.layers) -------------------------------------------------------------
def activation_param_count(name, dim: int) -> int:
    """Learned parameters of one activation of width ``dim`` (Mice/PBMish 2d, Dice/PReLU d)."""
    key = str(name).lower()
    if key.startswith("mice") or key.startswith("pbmish"):
        return 2 * dim
    if key in ("dice", "prelu"):
        return dim
    return 0


def mlp_param_count(
    input_dim, hidden_units, output_dim=None, batch_norm=False, activation="relu", use_bias=True
) -> int:
    """``MLP`` (fuxictr's MLP_Block with the zoo's activations)."""
    dims = [input_dim] + list(hidden_units)
    total = 0
    for i in range(len(hidden_units)):
        total += dims[i] * dims[i + 1] + (dims[i + 1] if use_bias else 0)
        total += 2 * dims[i + 1] if batch_norm else 0
        act = activation[i] if isinstance(activation, (list, tuple)) else activation
        total += activation_param_count(act, dims[i + 1])
    if output_dim is not None:
        total += dims[-1] * output_dim + (output_dim if use_bias else 0)
    return total


def self_attention_param_count(
    input_dim: int,
    attention_dim: int | None = None,
    use_residual: bool = True,
    layer_norm: bool = False,
    residual_projection: str = "auto",
) -> int:
    """One ``MultiHeadSelfAttention`` layer: Q, K, V (+ the residual projection, + layer norm)."""
    attention_dim = attention_dim or input_dim
    total = 3 * input_dim * attention_dim
    if use_residual and (residual_projection == "always" or input_dim != attention_dim):
        total += input_dim * attention_dim
    if layer_norm:
        total += 2 * attention_dim
    return total


# ---- baselines ------------------------------------------------------------------------------------
def gated_cross_param_count(input_dim: int, num_layers: int) -> int:
    """GDCN's gated cross network: per layer W_c, W_g (D x D) and one bias."""
    return num_layers * (2 * input_dim * input_dim + input_dim)


def bilinear_fusion_param_count(dim_a: int, dim_b: int, num_heads: int) -> int:
    """FinalMLP's multi-head bilinear fusion: two linear terms, one bias, k head matrices."""
    return dim_a + 1 + dim_b + num_heads * (dim_a // num_heads) * (dim_b // num_heads)


# ---- IBNet ----------------------------------------------------------------------------------------
def mask_augmentation_param_count(
    dim: int, num_layers: int = 3, mask_type: str = "learned", shared: bool = True
) -> int:
    """IBNet's mask augmentation: a D x D + D mask layer (none for dropout) and a 2D -> D compression."""
    n = 1 if shared else num_layers
    mask = 0 if mask_type == "dropout" else dim * dim + dim
    return n * (mask + 2 * dim * dim + dim)


def ibnet_branch_param_count(
    input_dim: int, num_cross_layers: int = 3, mask_type="learned", shared_augmentation: bool = True
) -> int:
    """IBNet's cross branch: L * 2D (cross w_l, b_l) plus the mask augmentation (paper Sec. 3.2)."""
    total = num_cross_layers * 2 * input_dim
    if mask_type not in (None, False, "none", "off"):
        total += mask_augmentation_param_count(input_dim, num_cross_layers, mask_type, shared_augmentation)
    return total


# ---- SFG ------------------------------------------------------------------------------------------
def generator_param_count(num_fields: int, embedding_dim: int, own_field: bool = False) -> int:
    """One SFG feature generator: (N d)^2, or N d^2 for the own-field ablation."""
    if own_field:
        return num_fields * embedding_dim * embedding_dim
    return (num_fields * embedding_dim) ** 2


# ---- MaskFusion -----------------------------------------------------------------------------------
def fused_mlp_param_count(input_dim: int, units, fuse_dim: int, fused_positions=None) -> int:
    """Linear layers input_dim -> units[0] -> ... -> units[-1] (the last is the output unit), with
    ``fuse_dim`` extra inputs at every position in ``fused_positions`` (default: all)."""
    dims = [int(input_dim)] + [int(u) for u in units]
    fused = set(range(len(units))) if fused_positions is None else set(fused_positions)
    return sum(
        (dims[t] + (fuse_dim if t in fused else 0)) * dims[t + 1] + dims[t + 1] for t in range(len(units))
    )


def mask_generator_param_count(
    num_fields: int, embedding_dim: int, granularity: str = "dimension", hidden_units=(512, 256)
) -> int:
    """One adaptive mask generator of MaskFusion: MLP n*d -> hidden -> n (feature) or n*d (dimension)."""
    nd = num_fields * embedding_dim
    out = num_fields if granularity == "feature" else nd
    return mlp_param_count(nd, list(hidden_units), output_dim=out)


def controller_param_count(
    num_fields: int,
    embedding_dim: int,
    positions: int,
    mask_type: str,
    granularity: str = "dimension",
    hidden_units=(512, 256),
    smooth_l0: bool = False,
) -> int:
    """Parameters MaskFusion adds besides the widened DNN layers."""
    nd = num_fields * embedding_dim
    if mask_type == "adaptive":
        total = positions * mask_generator_param_count(num_fields, embedding_dim, granularity, hidden_units)
    elif mask_type == "static":
        total = positions * (num_fields if granularity == "feature" else nd)
    elif mask_type == "dcnv2":
        total = positions * (nd * nd + nd)
    else:
        total = 0
    return total + (nd if smooth_l0 else 0)


def smooth_l0_steps_to_floor(eps_init: float = 0.1, eps_decay: float = 0.999, eps_min: float = 5e-4) -> int:
    """Steps until SmoothL0's eps reaches its floor (about 5.3k with the paper's values)."""
    return math.ceil(math.log(eps_min / eps_init) / math.log(eps_decay))
