"""EDCN (Chen et al., CIKM 2021): information sharing between parallel cross and deep networks.

EDCN keeps DCN's parallel cross network and DNN but, after every layer pair, fuses the two
outputs with a *bridge module* and feeds the fused vector to both networks' next layer through a
*regulation module*:

    x^1, h^1 = Regulation_1(E)                         field-wise gates on the embedding
    for l = 1..L:
        x^{l+1}_c = x^1 (x^l . w_l) + b_l + x^l        cross layer (x^1 is the regulated input)
        h^{l+1}_d = ReLU(W_l h^l + c_l)                deep layer, width F*d
        f^l      = Bridge(x^{l+1}_c, h^{l+1}_d)
        x^{l+1}, h^{l+1} = Regulation_{l+1}(f^l)       (l < L)
    y = sigmoid( w^T [x_c^{L+1} ; h_d^{L+1} ; f^L] + b )

Regulation: for the cross and the deep branch separately, learnable field scores w (init 1) give
gates g = softmax(w / temperature) over the F fields; each field's d-slice is scaled by its gate,
followed by BatchNorm (``batch_norm``, as in FuxiCTR, whose BARS parameter counts include it).
Bridge (``bridge_type``): pointwise_addition x + h, hadamard_product x * h, concatenation
ReLU(W [x; h] + b), attention_pooling a_x * x + a_h * h with element-wise weights
softmax over the two sources of per-branch scores (Linear-ReLU-Linear each).

``cross_residual: True`` keeps DCN's "+ x^l" in the cross layer as the paper writes it; FuxiCTR's
EDCN drops it (``cross_residual: False`` reproduces that). The deep layers are single-layer
``model_zoo.layers.MLP`` blocks of width F*d so the bridge can combine them with the cross output.
"""

import torch
from fuxictr.pytorch.layers import CrossInteraction
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers import MLP

BRIDGE_TYPES = ("pointwise_addition", "hadamard_product", "concatenation", "attention_pooling")


class BridgeModule(nn.Module):
    """Fuses the cross output x and the deep output h (both (B, D)) into f (B, D)."""

    def __init__(self, hidden_dim: int, bridge_type: str = "hadamard_product"):
        super().__init__()
        self.bridge_type = bridge_type
        if bridge_type == "concatenation":
            self.concat_layer = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU())
        elif bridge_type == "attention_pooling":
            self.cross_score = nn.Sequential(
                nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim, bias=False)
            )
            self.deep_score = nn.Sequential(
                nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim, bias=False)
            )

    def forward(self, x, h):
        if self.bridge_type == "pointwise_addition":
            return x + h
        if self.bridge_type == "hadamard_product":
            return x * h
        if self.bridge_type == "concatenation":
            return self.concat_layer(torch.cat([x, h], dim=-1))
        weights = torch.stack([self.cross_score(x), self.deep_score(h)], dim=0).softmax(dim=0)
        return weights[0] * x + weights[1] * h


class RegulationModule(nn.Module):
    """Field-wise softmax gates (with temperature) for the cross and the deep branch."""

    def __init__(
        self, num_fields: int, embedding_dim: int, temperature: float = 1.0, batch_norm: bool = False
    ):
        super().__init__()
        self.num_fields, self.embedding_dim = num_fields, embedding_dim
        self.temperature = float(temperature)
        self.cross_gate = nn.Parameter(torch.ones(num_fields))
        self.deep_gate = nn.Parameter(torch.ones(num_fields))
        dim = num_fields * embedding_dim
        self.cross_bn = nn.BatchNorm1d(dim) if batch_norm else None
        self.deep_bn = nn.BatchNorm1d(dim) if batch_norm else None

    def init_weights(self):  # called by BaseModel.reset_parameters
        nn.init.ones_(self.cross_gate)
        nn.init.ones_(self.deep_gate)

    def _gate(self, flat, scores, bn):
        gates = (scores / self.temperature).softmax(dim=-1)
        out = (flat.view(-1, self.num_fields, self.embedding_dim) * gates.unsqueeze(-1)).flatten(start_dim=1)
        return bn(out) if bn is not None else out

    def forward(self, flat):
        return self._gate(flat, self.cross_gate, self.cross_bn), self._gate(
            flat, self.deep_gate, self.deep_bn
        )


@register_model
class EDCN(CTRModel):
    """EDCN (Chen et al., CIKM 2021): parallel cross and deep layers with a bridge module (layer-wise fusion) and a regulation module (field-wise gates) between them.

    Attributes: ``embedding_layer`` (``field_embedding``), ``crossnet`` (ModuleList of fuxictr
    CrossInteraction: w . x_l scaled x0 plus bias), ``deep_layers`` (ModuleList of one-layer
    ``model_zoo.layers.MLP`` of width F*d), ``bridges`` (ModuleList of ``BridgeModule``),
    ``regulations`` (ModuleList of ``RegulationModule``, or None without ``use_regulation_module``),
    ``fc`` (linear on [cross; deep; bridge]). ``forward`` = ``embed`` -> ``regulate`` ->
    per layer ``cross_interact`` / ``deep_layers`` / ``bridges`` -> ``fc``.
    ``cross_interact(l, x0, x_l)`` takes the x0 operand explicitly.
    """

    choices = {"bridge_type": BRIDGE_TYPES}

    def __init__(
        self,
        feature_map,
        model_id="EDCN",
        embedding_dim=10,
        num_cross_layers=3,
        dnn_activations="relu",
        bridge_type="hadamard_product",
        temperature=1.0,
        use_regulation_module=True,
        cross_residual=True,
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.choose("bridge_type", bridge_type)
        num_layers = int(num_cross_layers)
        if num_layers < 1:
            raise ModelConfigError("EDCN: num_cross_layers must be at least 1")
        num_fields, dim = feature_map.num_fields, feature_map.sum_emb_out_dim()
        if dim != num_fields * int(embedding_dim):
            raise ModelConfigError(
                "EDCN needs one embedding of size embedding_dim per field "
                "(remove per-feature embedding_dim overrides)"
            )
        self.cross_residual = bool(cross_residual)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.crossnet = nn.ModuleList(CrossInteraction(dim) for _ in range(num_layers))
        self.deep_layers = nn.ModuleList(
            MLP(
                dim,
                hidden_units=[dim],
                hidden_activations=dnn_activations,
                dropout_rates=net_dropout,
                activation_options=kwargs,
            )
            for _ in range(num_layers)
        )
        self.bridges = nn.ModuleList(BridgeModule(dim, bridge_type) for _ in range(num_layers))
        self.regulations = (
            nn.ModuleList(
                RegulationModule(num_fields, int(embedding_dim), temperature, batch_norm)
                for _ in range(num_layers)
            )
            if use_regulation_module
            else None
        )
        self.fc = nn.Linear(3 * dim, 1)
        self.finish()

    def regulate(self, layer, flat):
        """Inputs of the cross and deep layer ``layer``: gated copies of ``flat`` (or ``flat`` twice)."""
        if self.regulations is None:
            return flat, flat
        return self.regulations[layer](flat)

    def cross_interact(self, layer, x0, x_l):
        """Cross layer ``layer``: x0 * (w . x_l) + b [+ x_l]."""
        out = self.crossnet[layer](x0, x_l)
        return out + x_l if self.cross_residual else out

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        cross_in, deep_in = self.regulate(0, self.embed(X, flatten=True))
        x0 = cross_in
        for layer in range(len(self.crossnet)):
            cross_out = self.cross_interact(layer, x0, cross_in)
            deep_out = self.deep_layers[layer](deep_in)
            fused = self.bridges[layer](cross_out, deep_out)
            if layer + 1 < len(self.crossnet):
                cross_in, deep_in = self.regulate(layer + 1, fused)
        return self.output(self.fc(torch.cat([cross_out, deep_out, fused], dim=-1)))
