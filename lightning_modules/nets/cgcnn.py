"""CGCNN: the crystal graph convolutional neural network.

Xie & Grossman, "Crystal Graph Convolutional Neural Networks for an Accurate
and Interpretable Prediction of Material Properties", Phys. Rev. Lett. 120,
145301 (2018); review 002, "Crystal structure aware property prediction".

Atom features (``materials.crystal_graph``) are embedded linearly; each
convolution is torch-geometric's ``CGConv`` (Eq. 5 of the paper: a gated sum
over neighbours, z = v_i ⊕ v_j ⊕ u_ij, σ(z W_f + b_f) ⊙ g(z W_s + b_s), with
batch normalisation and the residual v_i) followed by a softplus; the
distances u_ij enter as Gaussians (centres 0..cutoff every 0.2 Å, width
0.2 Å); atoms are mean-pooled per crystal, then a softplus MLP gives the
property. The paper's defaults: 64-wide atoms, 3 convolutions, one 128-wide
hidden layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import CGConv, global_mean_pool

from materials.crystal_graph import ATOM_FEATURE_WIDTH, gaussian_centers


class GaussianDistance(nn.Module):
    """Distances (E,) -> (E, n_centres) Gaussian expansion, exp(-(d - μ_k)² / width²)."""

    def __init__(self, cutoff: float = 8.0, step: float = 0.2):
        super().__init__()
        self.register_buffer("centers", torch.from_numpy(gaussian_centers(cutoff, step)))
        self.width = step

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((distance.unsqueeze(-1) - self.centers) ** 2) / self.width ** 2)


class CGCNN(nn.Module):
    """Crystal graph (PyG ``Data`` with ``x``, ``edge_index``, ``edge_attr`` = distances, ``batch``) -> (B, 1)."""

    def __init__(self, n_features: int = ATOM_FEATURE_WIDTH, atom_width: int = 64, n_conv: int = 3,
                 hidden_width: int = 128, n_hidden: int = 1, cutoff: float = 8.0, gaussian_step: float = 0.2):
        super().__init__()
        self.distance = GaussianDistance(cutoff, gaussian_step)
        n_gaussians = len(self.distance.centers)
        self.embed = nn.Linear(n_features, atom_width)
        self.convs = nn.ModuleList(CGConv(atom_width, dim=n_gaussians, batch_norm=True) for _ in range(n_conv))
        layers: list[nn.Module] = []
        width = atom_width
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden_width), nn.Softplus()]
            width = hidden_width
        self.head = nn.Sequential(nn.Softplus(), *layers, nn.Linear(width, 1))
        self.act = nn.Softplus()

    def forward(self, graph) -> torch.Tensor:
        x = self.embed(graph.x)
        edge_attr = self.distance(graph.edge_attr)
        for conv in self.convs:
            x = self.act(conv(x, graph.edge_index, edge_attr))
        return self.head(global_mean_pool(x, graph.batch))
