"""DCN (Wang et al., ADKDD 2017) and DCN-V2 (Wang et al., WWW 2021).

DCN: a cross network (v1) in parallel with a DNN. The cross layer is
x_{l+1} = x0 * (x_l . w_l) + b_l + x_l (fuxictr's ``CrossNet``); the final logit is a linear layer
on [cross output ; DNN output].

DCNv2: matrix cross layers x_{l+1} = x0 * (W_l x_l + b_l) + x_l (fuxictr's ``CrossNetV2``) or their
low-rank mixture of experts (``CrossNetMix``), in the four structures of the paper.
"""

import torch
from fuxictr.pytorch.layers import CrossNet, CrossNetMix, CrossNetV2
from torch import nn

from .. import register_model
from ..base import CTRModel, ParallelCrossModel
from ..errors import ModelConfigError


@register_model
class DCN(ParallelCrossModel):
    """Deep & Cross Network v1: CrossNet(x0) || MLP(x0) -> linear -> sigmoid."""

    def __init__(
        self,
        feature_map,
        model_id="DCN",
        embedding_dim=10,
        dnn_hidden_units=(64, 64, 64),
        dnn_activations="relu",
        num_cross_layers=3,
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        input_dim = feature_map.sum_emb_out_dim()
        self.dnn = self.dnn_tower(dnn_hidden_units, dnn_activations, net_dropout, batch_norm, output_dim=None)
        self.crossnet = CrossNet(input_dim, num_cross_layers)
        self.fc = nn.Linear(input_dim + self.tower_width(dnn_hidden_units), 1)
        self.finish()


_DCNV2_STRUCTURES = ("crossnet_only", "stacked", "parallel", "stacked_parallel")


@register_model
class DCNv2(CTRModel):
    """DCN-V2 (Wang et al., WWW 2021): full-rank cross net (CrossNetV2) or low-rank mixture of experts (CrossNetMix), crossnet_only/stacked/parallel/stacked_parallel.

    Cross layer x_{l+1} = x0 * (W_l x_l + b_l) + x_l (fuxictr ``CrossNetV2``), or with
    ``use_low_rank_mixture`` the mixture of ``num_experts`` rank-``low_rank`` experts
    x0 * (U_i tanh(C_i tanh(V_i^T x_l)) + b_l), gated by softmax_i(g_i^T x_l) (fuxictr
    ``CrossNetMix``). ``model_structure``:

    - ``crossnet_only``: logit = fc(x_L);
    - ``stacked``: logit = fc(stacked_dnn(x_L));
    - ``parallel``: logit = fc([x_L ; dnn(x0)]);
    - ``stacked_parallel``: logit = fc([stacked_dnn(x_L) ; dnn(x0)]).

    ``dnn_hidden_units`` sizes whichever tower the structure uses; ``stacked_dnn_hidden_units`` /
    ``parallel_dnn_hidden_units`` (FuxiCTR's keys) override it per tower.

    Attributes: ``embedding_layer``, ``crossnet`` (CrossNetV2 or CrossNetMix), ``dnn`` (the
    parallel tower on x0, ``model_zoo.layers.MLP`` without output unit, or None), ``stacked_dnn``
    (the tower on the cross output, or None), ``fc`` (final linear). ``forward`` = ``embed`` ->
    ``cross(x0)`` -> ``combine(cross_out, x0)`` -> ``fc``. ``cross(x0, operand_fn)`` lets
    ``operand_fn(l, x_l)`` replace the x0 operand of layer l.
    """

    choices = {"model_structure": _DCNV2_STRUCTURES}

    def __init__(
        self,
        feature_map,
        model_id="DCNv2",
        embedding_dim=10,
        model_structure="parallel",
        use_low_rank_mixture=False,
        low_rank=32,
        num_experts=4,
        num_cross_layers=3,
        dnn_hidden_units=(64, 64, 64),
        stacked_dnn_hidden_units=None,
        parallel_dnn_hidden_units=None,
        dnn_activations="relu",
        net_dropout=0.0,
        batch_norm=False,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.choose("model_structure", model_structure)
        if int(num_cross_layers) < 1:
            raise ModelConfigError("DCNv2: num_cross_layers must be at least 1")
        self.model_structure = model_structure
        self.use_low_rank_mixture = bool(use_low_rank_mixture)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        input_dim = feature_map.sum_emb_out_dim()
        if self.use_low_rank_mixture:
            self.crossnet = CrossNetMix(input_dim, int(num_cross_layers), int(low_rank), int(num_experts))
        else:
            self.crossnet = CrossNetV2(input_dim, int(num_cross_layers))

        def tower(units, key):
            units = list(dnn_hidden_units or []) if units is None else list(units)
            if not units:
                raise ModelConfigError(
                    f"DCNv2: model_structure={model_structure} needs a DNN; set {key} "
                    f"(or dnn_hidden_units) to a non-empty list"
                )
            return units, self.dnn_tower(units, dnn_activations, net_dropout, batch_norm, output_dim=None)

        final_dim = 0
        self.stacked_dnn = self.dnn = None
        if model_structure in ("stacked", "stacked_parallel"):
            units, self.stacked_dnn = tower(stacked_dnn_hidden_units, "stacked_dnn_hidden_units")
            final_dim += units[-1]
        else:
            final_dim += input_dim
        if model_structure in ("parallel", "stacked_parallel"):
            units, self.dnn = tower(parallel_dnn_hidden_units, "parallel_dnn_hidden_units")
            final_dim += units[-1]
        self.fc = nn.Linear(final_dim, 1)
        self.finish()

    def cross(self, x0, operand_fn=None):
        """Cross network output x_L, (B, D). ``operand_fn(l, x_l)`` may replace x0 in layer l."""
        if operand_fn is None:
            out = self.crossnet(x0)
            return out.reshape(x0.shape[0], -1)  # CrossNetMix squeezes a batch of one
        x_l = x0
        for layer in range(self.crossnet_depth):
            operand = operand_fn(layer, x_l)
            operand = x0 if operand is None else operand
            x_l = self._cross_layer(layer, operand, x_l)
        return x_l

    @property
    def crossnet_depth(self) -> int:
        return self.crossnet.layer_num if self.use_low_rank_mixture else self.crossnet.num_layers

    def _cross_layer(self, layer, operand, x_l):
        """One cross layer with an explicit x0 operand (same parameters as ``self.crossnet``)."""
        net = self.crossnet
        if not self.use_low_rank_mixture:
            return x_l + operand * net.cross_layers[layer](x_l)
        V, C, U = net.V_list[layer], net.C_list[layer], net.U_list[layer]  # (E,D,r), (E,r,r), (E,D,r)
        v = torch.tanh(torch.einsum("bd,edr->ber", x_l, V))
        v = torch.tanh(torch.einsum("est,bet->bes", C, v))
        experts = operand.unsqueeze(1) * (torch.einsum("edr,ber->bed", U, v) + net.bias[layer].view(1, 1, -1))
        gates = torch.cat([gate(x_l) for gate in net.gating], dim=-1).softmax(dim=-1)  # (B, E)
        return x_l + torch.einsum("bed,be->bd", experts, gates)

    def combine(self, cross_out, x0):
        """The structure-specific representation fed to ``fc``."""
        parts = [self.stacked_dnn(cross_out) if self.stacked_dnn is not None else cross_out]
        if self.dnn is not None:
            parts.append(self.dnn(x0))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        x0 = self.embed(X, flatten=True)
        return self.output(self.fc(self.combine(self.cross(x0), x0)))
