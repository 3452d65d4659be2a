"""Crystal graphs (Xie & Grossman, "Crystal Graph Convolutional Neural Networks
for an Accurate and Interpretable Prediction of Material Properties", Phys.
Rev. Lett. 120, 145301 (2018); review 002, "Crystal structure aware property
prediction").

A crystal is a multigraph: one node per atom of the unit cell, one edge from
each of its nearest periodic neighbours within ``cutoff`` Å (at most
``max_neighbors``), carrying the distance. Neighbours come from pymatgen's
vectorised ``Structure.get_neighbor_list``; ties at the cut are broken by
distance, then atomic number, so a supercell gets the same neighbour
multiset per atom as its primitive cell.

Atom features follow CGCNN's idea (one-hot encodings of element properties,
their Table S2) built from the Magpie element table this project already uses
for IRNet: group (18), period (7), block (4), and ten quantile bins each of
electronegativity, covalent radius, ground-state volume per atom and
Mendeleev number, plus valence electrons 1..12: ``ATOM_FEATURE_WIDTH`` = 81.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from materials.elements import ELEMENT_INDEX, ELEMNET_ELEMENTS
from materials.magpie import MAGPIE_PROPERTIES, magpie_element_table

_BINNED = ("Electronegativity", "CovalentRadius", "GSvolume_pa", "MendeleevNumber")
_N_BINS = 10
ATOM_FEATURE_WIDTH = 18 + 7 + 4 + _N_BINS * len(_BINNED) + 12


class IsolatedAtomError(ValueError):
    """An atom with no neighbour inside the cutoff: its node would have no edge."""


def _one_hot(values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(values), n), dtype=np.float32)
    out[np.arange(len(values)), np.clip(values, 0, n - 1)] = 1.0
    return out


@lru_cache(maxsize=1)
def atom_feature_table() -> np.ndarray:
    """(86, ATOM_FEATURE_WIDTH) float32 one-hot atom features, rows in ``ELEMNET_ELEMENTS`` order."""
    from pymatgen.core import Element

    table = magpie_element_table()
    col = {p: table[:, MAGPIE_PROPERTIES.index(p)] for p in MAGPIE_PROPERTIES}
    blocks = np.array(["spdf".index(Element(e).block) for e in ELEMNET_ELEMENTS])
    parts = [
        _one_hot(col["Column"].astype(int) - 1, 18),
        _one_hot(col["Row"].astype(int) - 1, 7),
        _one_hot(blocks, 4),
    ]
    for name in _BINNED:
        edges = np.quantile(col[name], np.linspace(0, 1, _N_BINS + 1)[1:-1])
        parts.append(_one_hot(np.searchsorted(edges, col[name], side="right"), _N_BINS))
    parts.append(_one_hot(col["NValence"].astype(int) - 1, 12))
    features = np.concatenate(parts, axis=1)
    assert features.shape[1] == ATOM_FEATURE_WIDTH
    features.flags.writeable = False
    return features


def atom_indices(structure, name: str = "structure") -> np.ndarray:
    """Row of each site's element in ``atom_feature_table`` (ElemNet's 86 elements)."""
    symbols = [site.specie.symbol for site in structure]
    missing = sorted({s for s in symbols if s not in ELEMENT_INDEX})
    if missing:
        raise ValueError(f"{name}: element(s) {', '.join(missing)} are outside the 86 elements with atom features")
    return np.array([ELEMENT_INDEX[s] for s in symbols], dtype=np.int64)


def neighbour_graph(structure, cutoff: float = 8.0, max_neighbors: int = 12,
                    name: str = "structure") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (center, neighbour, distance) of the crystal graph, ``max_neighbors`` nearest per atom.

    Raises ``IsolatedAtomError`` naming the structure, the atom and the cutoff
    when an atom has no neighbour within ``cutoff``.
    """
    center, neighbour, _, distance = structure.get_neighbor_list(r=cutoff)
    numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    order = np.lexsort((numbers[neighbour], np.round(distance, 6), center))
    center, neighbour, distance = center[order], neighbour[order], distance[order]
    counts = np.bincount(center, minlength=len(structure))
    if (counts == 0).any():
        lonely = int(np.flatnonzero(counts == 0)[0])
        raise IsolatedAtomError(
            f"{name}: atom {lonely} ({structure[lonely].specie}) has no neighbour within the cutoff of "
            f"{cutoff:g} Å; raise `cutoff` (the nearest atom is "
            f"{_nearest_distance(structure, lonely):.2f} Å away)"
        )
    start = np.cumsum(counts) - counts
    rank = np.arange(len(center)) - np.repeat(start, counts)
    keep = rank < max_neighbors
    return center[keep].astype(np.int64), neighbour[keep].astype(np.int64), distance[keep].astype(np.float32)


def _nearest_distance(structure, index: int) -> float:
    site = structure[index]
    for radius in (10.0, 20.0, 40.0):
        found = [n.nn_distance for n in structure.get_neighbors(site, radius)]
        if found:
            return min(found)
    return float("inf")


def gaussian_centers(cutoff: float = 8.0, step: float = 0.2) -> np.ndarray:
    """CGCNN's Gaussian distance basis: centres 0, step, ..., cutoff (41 for 8 Å and 0.2 Å)."""
    return np.arange(0.0, cutoff + step / 2, step, dtype=np.float32)
