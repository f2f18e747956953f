"""Fi-GNN (Li, Cui, Wu, Zhang, Wang, CIKM 2019): feature interactions as a graph neural network.

Fields are the nodes of a fully connected feature graph. Per sample:

1. Node states start from the field embeddings h^0_i = e_i (optionally refined first by the
   paper's multi-head self-attention layer, ``use_self_attention``).
2. Edge weights come from attention on the initial states,
   A[i, j] = softmax_{j != i}( LeakyReLU( w^T [h^0_i ; h^0_j] ) ), no self-loops.
3. For t = 1..T (``gnn_layers``), each node aggregates its neighbours through edge-wise
   transformations factorised into an output matrix per source node and an input matrix per
   target node:  a_i = W_in_i sum_j A[i, j] W_out_j h_j + b,  then updates its state with a GRU,
   h_i = GRU(a_i, h_i) (or h_i + a_i without ``use_gru``), plus the residual h^0_i.
4. Attentional scoring: y = sum_i a_i * s_i with s_i = w_s^T h_i; the weights a_i are
   sigmoid(W_a concat_i h_i) over the whole graph state (FuxiCTR/BARS, ``attention_scoring:
   graph``) or a_i = w_a^T h_i per node (``attention_scoring: node``).

Defaults follow FuxiCTR/BARS, whose logged parameter counts this layout reproduces: no
self-attention layer, separate weights per propagation step (``reuse_graph_layer: False``; the
paper's recurrent form shares them, ``reuse_graph_layer: True``), graph-level scoring weights.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers.attention import MultiHeadSelfAttention


class FieldGraphLayer(nn.Module):
    """One propagation step: a_i = W_in_i sum_j A[i, j] W_out_j h_j + b (per-node W_in, W_out)."""

    def __init__(self, num_fields: int, embedding_dim: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(num_fields, embedding_dim, embedding_dim))
        self.W_out = nn.Parameter(torch.empty(num_fields, embedding_dim, embedding_dim))
        self.bias = nn.Parameter(torch.zeros(embedding_dim))
        self.init_weights()

    def init_weights(self):  # called by BaseModel.reset_parameters
        nn.init.xavier_normal_(self.W_in)
        nn.init.xavier_normal_(self.W_out)
        nn.init.zeros_(self.bias)

    def forward(self, graph, h):
        messages = torch.einsum("fde,bfe->bfd", self.W_out, h)  # W_out_j h_j
        aggregated = torch.bmm(graph, messages)  # sum_j A[i, j] (.)
        return torch.einsum("fde,bfe->bfd", self.W_in, aggregated) + self.bias


@register_model
class FiGNN(CTRModel):
    """Fi-GNN (Li et al., CIKM 2019): attentional field graph, per-node in/out edge transforms, GRU state updates with residual, attentional scoring (FuxiCTR/BARS layout).

    Attributes: ``embedding_layer`` (``field_embedding``), ``self_attention``
    (``MultiHeadSelfAttention`` or None), ``edge_attention`` (nn.Linear 2d -> 1, no bias),
    ``graph_layers`` (ModuleList of ``FieldGraphLayer``; one shared with ``reuse_graph_layer``),
    ``gru`` (nn.GRUCell or None), ``score_layer`` (d -> 1), ``weight_layer`` (F*d -> F or d -> 1).
    ``forward`` = ``embed`` -> ``initial_states`` -> ``build_graph`` -> ``propagate`` -> ``score``.
    """

    choices = {"attention_scoring": ("graph", "node")}

    def __init__(
        self,
        feature_map,
        model_id="FiGNN",
        embedding_dim=10,
        gnn_layers=3,
        use_gru=True,
        use_residual=True,
        reuse_graph_layer=False,
        use_self_attention=False,
        num_heads=1,
        attention_scoring="graph",
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        self.num_fields, self.embedding_dim = feature_map.num_fields, int(embedding_dim)
        if self.num_fields < 2:
            raise ModelConfigError("FiGNN needs at least two fields to build a feature graph")
        self.choose("attention_scoring", attention_scoring)
        if int(gnn_layers) < 1:
            raise ModelConfigError("FiGNN: gnn_layers must be at least 1")
        self.gnn_layers, self.use_residual = int(gnn_layers), bool(use_residual)
        self.embedding_layer = self.field_embedding(feature_map, embedding_dim)
        self.self_attention = (
            MultiHeadSelfAttention(self.embedding_dim, self.embedding_dim, num_heads)
            if use_self_attention
            else None
        )
        self.edge_attention = nn.Linear(2 * self.embedding_dim, 1, bias=False)
        self.graph_layers = nn.ModuleList(
            FieldGraphLayer(self.num_fields, self.embedding_dim)
            for _ in range(1 if reuse_graph_layer else self.gnn_layers)
        )
        self.gru = nn.GRUCell(self.embedding_dim, self.embedding_dim) if use_gru else None
        self.attention_scoring = attention_scoring
        self.score_layer = nn.Linear(self.embedding_dim, 1, bias=False)
        self.weight_layer = (
            nn.Linear(self.num_fields * self.embedding_dim, self.num_fields, bias=False)
            if attention_scoring == "graph"
            else nn.Linear(self.embedding_dim, 1, bias=False)
        )
        self.register_buffer("self_loops", torch.eye(self.num_fields, dtype=torch.bool), persistent=False)
        self.finish()

    def initial_states(self, feature_emb):
        return self.self_attention(feature_emb) if self.self_attention is not None else feature_emb

    def build_graph(self, h0):
        """Attentional adjacency A (B, F, F): row i holds node i's weights over its neighbours j."""
        num = self.num_fields
        pairs = torch.cat(
            [h0.unsqueeze(2).expand(-1, -1, num, -1), h0.unsqueeze(1).expand(-1, num, -1, -1)], dim=-1
        )  # [h_i ; h_j]
        scores = F.leaky_relu(self.edge_attention(pairs).squeeze(-1), negative_slope=0.01)
        return scores.masked_fill(self.self_loops, float("-inf")).softmax(dim=-1)

    def propagate(self, graph, h0):
        """T propagation steps with GRU (or additive) updates and the residual to h0."""
        h = h0
        for step in range(self.gnn_layers):
            layer = self.graph_layers[0 if len(self.graph_layers) == 1 else step]
            a = layer(graph, h)
            if self.gru is not None:
                h = self.gru(a.reshape(-1, self.embedding_dim), h.reshape(-1, self.embedding_dim)).view_as(h0)
            else:
                h = h + a
            if self.use_residual:
                h = h + h0
        return h

    def score(self, h):
        """Attentional scoring: sum_i a_i * s_i, (B, 1)."""
        node_scores = self.score_layer(h).squeeze(-1)  # (B, F)
        if self.attention_scoring == "graph":
            weights = torch.sigmoid(self.weight_layer(h.flatten(start_dim=1)))  # (B, F)
        else:
            weights = self.weight_layer(h).squeeze(-1)
        return (weights * node_scores).sum(dim=1, keepdim=True)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        h0 = self.initial_states(self.embed(X))
        return self.output(self.score(self.propagate(self.build_graph(h0), h0)))
