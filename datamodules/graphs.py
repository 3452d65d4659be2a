"""Crystal graphs packed end to end, batched by index arithmetic (no per-graph Python).

All graphs live in a few flat tensors (atoms, edges, distances) with offsets
per graph; a batch of rows gathers its atoms and edges with
``repeat_interleave`` and shifts the edge indices, giving one
``torch_geometric.data.Data`` with a ``batch`` vector, the layout PyG's
``Batch`` has. ``datamodules.batches.ShuffledBatches`` picks the rows, so the
seeded order, resumption and DDP sharding are those of every other task.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data


def _gather(ptr: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the items of ``rows`` in a packed array with offsets ``ptr``, and the count per row."""
    start, counts = ptr[rows], ptr[rows + 1] - ptr[rows]
    first = torch.cumsum(counts, 0) - counts
    flat = torch.arange(int(counts.sum())) - torch.repeat_interleave(first, counts) + torch.repeat_interleave(start, counts)
    return flat, counts


class PackedGraphs(Dataset):
    """Crystal graphs with a target each; ``dataset[rows]`` is ``(Data, y)`` for a whole batch.

    Args:
        atom_features: (n_atom_types, F) float table; ``atoms`` index its rows.
        atoms, node_ptr: atom type per atom, packed, with per-graph offsets.
        edge_src, edge_dst, edge_dist, edge_ptr: edges j -> i (indices local to
            their graph) and their lengths in Å, packed, with per-graph offsets.
        targets: (n,) float.
    """

    def __init__(self, atom_features: np.ndarray, atoms: np.ndarray, node_ptr: np.ndarray, edge_src: np.ndarray,
                 edge_dst: np.ndarray, edge_dist: np.ndarray, edge_ptr: np.ndarray, targets: np.ndarray):
        self.atom_features = torch.tensor(np.asarray(atom_features, dtype=np.float32))
        self.atoms = torch.as_tensor(atoms.astype(np.int64))
        self.node_ptr = torch.as_tensor(node_ptr.astype(np.int64))
        self.edges = torch.as_tensor(np.stack([edge_src, edge_dst]).astype(np.int64))
        self.edge_dist = torch.as_tensor(edge_dist.astype(np.float32))
        self.edge_ptr = torch.as_tensor(edge_ptr.astype(np.int64))
        self.y = torch.as_tensor(np.asarray(targets, dtype=np.float32)).unsqueeze(1)

    @classmethod
    def select(cls, atom_features: np.ndarray, parsed: dict, rows: np.ndarray, targets: np.ndarray) -> PackedGraphs:
        """The graphs ``rows`` of a parsed structure cache (``datamodules.structure_data``), repacked."""
        rows_t = torch.as_tensor(rows, dtype=torch.int64)
        node_ptr, edge_ptr = torch.as_tensor(parsed["node_ptr"]), torch.as_tensor(parsed["edge_ptr"])
        nodes, n_nodes = _gather(node_ptr, rows_t)
        edges, n_edges = _gather(edge_ptr, rows_t)
        cum = lambda c: np.concatenate([[0], np.cumsum(c.numpy())])  # noqa: E731
        return cls(atom_features, parsed["atoms"][nodes.numpy()], cum(n_nodes), parsed["edge_src"][edges.numpy()],
                   parsed["edge_dst"][edges.numpy()], parsed["edge_dist"][edges.numpy()], cum(n_edges), targets)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, rows) -> tuple[Data, torch.Tensor]:
        rows = torch.as_tensor(rows, dtype=torch.int64).reshape(-1)
        nodes, n_nodes = _gather(self.node_ptr, rows)
        edges, n_edges = _gather(self.edge_ptr, rows)
        node_offset = torch.cumsum(n_nodes, 0) - n_nodes  # where each graph's atoms start in the batch
        edge_index = self.edges[:, edges] + torch.repeat_interleave(node_offset, n_edges)
        batch = torch.repeat_interleave(torch.arange(len(rows)), n_nodes)
        graph = Data(x=self.atom_features[self.atoms[nodes]], edge_index=edge_index,
                     edge_attr=self.edge_dist[edges], batch=batch)
        return graph, self.y[rows]
