"""Roost: a composition read as a set of elements, with fraction-weighted soft attention.

Goodall & Lee, "Predicting materials properties without crystal structure: deep representation
learning from stoichiometry", Nat. Commun. 11, 6280 (2020). Each element of a composition is a node
with an element embedding (here mat2vec, Tshitoyan et al. 2019, from the ``crabnet`` wheel, or
learned from scratch) and its fraction; every node attends to every node of its composition
(itself included) with *weighted* soft attention,

    a_ij = w_j^p exp(e_ij) / sum_k w_k^p exp(e_ik),   e_ij = gate([h_i, h_j]),

so an element present in a small amount contributes little (p is learned per head); node updates
are residual and averaged over heads; a weighted attention pooling of the nodes (again over heads)
gives the composition's vector, and a residual MLP the property.

Sizes follow the paper's defaults: 64-wide nodes, 3 message-passing layers of 3 heads with
256-wide gate and message MLPs, 3 pooling heads, output MLP 1024-512-256-128-64.

This implementation is our own and dense: the compositions of a batch are padded to the batch's
largest element count k (OQMD: k <= 7), so attention is a masked softmax over a (batch, k, k)
tensor instead of a scatter over an edge list. The input is the same 86-element fraction vector
ElemNet reads (``features: fractions``), so the data pipeline is ElemNet's; the set is extracted
in :meth:`Roost.as_set`, and :meth:`Roost.forward_set` is invariant to the order of the elements.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from materials.elements import N_ELEMENTS


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def weighted_softmax(logits: torch.Tensor, weights: torch.Tensor, power: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """softmax over the last axis of ``logits + power · log(weights)``, padded positions excluded.

    ``logits`` (..., k, heads), ``weights`` and ``mask`` broadcastable to (..., k, 1), ``power`` (heads,)."""
    scores = logits + power * weights.clamp_min(1e-12).log()
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-2)


def attend(attention: torch.Tensor, hidden: torch.Tensor, last: nn.Linear, heads: int) -> torch.Tensor:
    """The heads' attention-weighted messages, averaged over heads: mean_h sum_j a_jh (W_h s_j + b_h).

    ``attention`` (..., n, heads) sums to one over its n axis, ``hidden`` (..., n, hidden) holds the message
    MLP's activations s_j before its last layer ``last`` (hidden → heads × width, head h's rows W_h, b_h). That
    layer is linear and the weights sum to one, so it is applied after the weighted sum, W_h (sum_j a_jh s_j)
    + b_h: once per node and head instead of once per pair and head, which is k times fewer multiply-adds for
    a composition of k elements (the message layer's largest matrix); the result is the same function."""
    pooled = attention.transpose(-1, -2) @ hidden  # (..., heads, hidden)
    weight = last.weight.view(heads, -1, last.in_features)  # (heads, width, hidden)
    out = pooled.flatten(-2) @ weight.transpose(0, 1).flatten(1).T  # sum over heads of W_h pooled_h
    return (out + last.bias.view(heads, -1).sum(0)) / heads


class WeightedAttentionLayer(nn.Module):
    """One message-passing layer: every node gathers heads × (weighted attention · message)."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.heads, self.width = heads, width
        self.gate = _mlp([2 * width, hidden, heads])
        self.message = _mlp([2 * width, hidden, heads * width])
        self.power = nn.Parameter(torch.ones(heads))

    @staticmethod
    def on_pairs(mlp: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
        """``mlp([h_i, h_j])`` for every pair (i, j), (b, k, k, out). The first layer is linear, so it is applied
        to each node once, as W[h_i; h_j] + b = W_i h_i + (W_j h_j + b), and broadcast over the pairs: the
        (b, k, k, 2 width) concatenation is never built, and the pairs cost only the layers after it."""
        first, rest = mlp[0], mlp[1:]
        d = h.shape[-1]
        own = nn.functional.linear(h, first.weight[:, :d])
        other = nn.functional.linear(h, first.weight[:, d:], first.bias)
        return rest(own.unsqueeze(2) + other.unsqueeze(1))

    def forward(self, h: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attention = weighted_softmax(self.on_pairs(self.gate, h), weights[:, None, :, None], self.power,
                                     mask[:, None, :, None])
        hidden = self.on_pairs(self.message[:-1], h)  # the message MLP up to its last (linear) layer
        return h + attend(attention, hidden, self.message[-1], self.heads)


class WeightedAttentionPooling(nn.Module):
    """The composition's vector: heads × weighted attention over its nodes, averaged."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.heads, self.width = heads, width
        self.gate = _mlp([width, hidden, heads])
        self.message = _mlp([width, hidden, heads * width])
        self.power = nn.Parameter(torch.ones(heads))

    def forward(self, h: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attention = weighted_softmax(self.gate(h), weights[..., None], self.power, mask[..., None])
        return attend(attention, self.message[:-1](h), self.message[-1], self.heads)


class ResidualHead(nn.Module):
    """Output MLP with a shortcut around every layer (a projection where the width changes)."""

    def __init__(self, width: int, hidden: list[int]):
        super().__init__()
        widths = [width, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.shortcuts = nn.ModuleList(nn.Identity() if a == b else nn.Linear(a, b, bias=False)
                                       for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, shortcut in zip(self.layers, self.shortcuts):
            x = torch.nn.functional.silu(layer(x)) + shortcut(x)
        return self.out(x)


class Roost(nn.Module):
    """Roost on an (n, 86) element-fraction vector; returns (n, 1).

    Args:
        n_features: input width (linked from the data: the 86 ElemNet elements).
        element_embedding: the table the element embeddings start from, ``mat2vec`` (200-d, Tshitoyan et al.
            2019), which the data hand over at the start of a fit (:meth:`use_element_table`), or ``learned``
            (drawn at random, 200-d).
        fine_tune_embedding: train a table's rows with the net (True), or keep them fixed as the paper does,
            where the pretrained vectors are the elements' input features and only the projection after them
            learns (False). A ``learned`` table is always trained.
        width: node width (the paper's 64; the fraction is one of its channels).
        n_layers, heads, hidden: message passing (3 layers × 3 heads, 256-wide MLPs).
        pool_heads: heads of the weighted attention pooling.
        head: widths of the residual output MLP.
    """

    def __init__(self, n_features: int = N_ELEMENTS, element_embedding: Literal["mat2vec", "learned"] = "mat2vec",
                 fine_tune_embedding: bool = True, width: int = 64, n_layers: int = 3, heads: int = 3,
                 hidden: int = 256, pool_heads: int = 3,
                 head: list[int] | tuple[int, ...] = (1024, 512, 256, 128, 64)):
        super().__init__()
        if n_features != N_ELEMENTS:
            raise ValueError(f"Roost reads the {N_ELEMENTS}-element fraction vector (data features: fractions), "
                             f"not {n_features} features")
        if element_embedding not in ("mat2vec", "learned"):
            raise ValueError(f"element_embedding {element_embedding!r}: use 'mat2vec' or 'learned'")
        #: the element table this net starts from (None: learned from random draws)
        self.element_table = None if element_embedding == "learned" else element_embedding
        # a table's rows arrive with the data (zeros until then, drawing no random numbers); a checkpoint's
        # fine-tuned rows come with its weights
        self.embedding = (nn.Embedding(N_ELEMENTS, 200) if self.element_table is None
                          else nn.Embedding.from_pretrained(torch.zeros(N_ELEMENTS, 200),
                                                            freeze=not fine_tune_embedding))
        self.project = nn.Linear(self.embedding.embedding_dim, width - 1)
        self.layers = nn.ModuleList(WeightedAttentionLayer(width, heads, hidden) for _ in range(n_layers))
        self.pool = WeightedAttentionPooling(width, pool_heads, hidden)
        self.head = ResidualHead(width, list(head))

    def use_element_table(self, table: torch.Tensor) -> None:
        """Start the element embeddings from ``table`` (86 rows, one per input element; the data's copy of
        :attr:`element_table`)."""
        if tuple(table.shape) != tuple(self.embedding.weight.shape):
            raise ValueError(f"element table {self.element_table!r}: shape {tuple(table.shape)}, Roost's embedding "
                             f"is {tuple(self.embedding.weight.shape)}")
        with torch.no_grad():
            self.embedding.weight.copy_(table)

    @staticmethod
    def as_set(fractions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(elements, weights, mask), each (n, k): the non-zero entries of each row, padded to the batch's
        largest element count k (padding: weight 0, mask False)."""
        k = max(int((fractions > 0).sum(dim=1).max()), 1)
        weights, elements = fractions.topk(k, dim=1)
        mask = weights > 0
        return elements, weights * mask, mask

    def forward_set(self, elements: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)  # Fe4O6 is Fe2O3
        h = torch.cat([self.project(self.embedding(elements)), weights.unsqueeze(-1)], dim=-1)
        for layer in self.layers:
            h = layer(h, weights, mask)
        return self.head(self.pool(h, weights, mask))

    def forward(self, fractions: torch.Tensor) -> torch.Tensor:
        """In evaluation, each element count of the batch in its own pass, so no composition is padded: a
        batch of 4,096 OQMD compositions holds a 7-element one and would otherwise pay (7/3)^2 ~ 5x the pair
        attention for its ternaries; the outputs come back in the rows' order. Training batches are padded:
        they are small, and split by element count they run slower (1,040 against 1,480 samples/s here);
        the datamodule's ``batching: by_element_count`` makes them one element count each (2,920)."""
        if self.training:
            return self.forward_set(*self.as_set(fractions))
        counts = (fractions > 0).sum(dim=1)
        groups = [torch.nonzero(counts == k).flatten() for k in torch.unique(counts)]
        if len(groups) == 1:
            return self.forward_set(*self.as_set(fractions))
        out = torch.cat([self.forward_set(*self.as_set(fractions[rows])) for rows in groups])
        return out[torch.argsort(torch.cat(groups))]
