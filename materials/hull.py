"""Formation-energy convex hulls per chemical system, for millions of queries.

The hull of a system S (elements at 0 eV/atom, every known compound made only
of S's elements) is the lower convex envelope of the points
(composition, ΔHf). On the composition simplex it is the maximum of its lower
facet planes, and a plane over fractions x is linear, E = c·x. So a system is
reduced once (scipy's Qhull) to a small matrix C of facet coefficients and its
hull energy at any composition is ``max(x @ C.T)``: exact, vectorised, and
batched over systems by padding. ``pymatgen.analysis.phase_diagram.
PhaseDiagram.get_hull_energy_per_atom`` is the reference (tests agree within
1e-6 eV/atom).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np
from scipy.spatial import ConvexHull, QhullError

_LOWER = -1e-9  # a facet is on the lower hull when its outward normal points down in energy


def facet_coefficients(points: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """(F, k) coefficients of the lower hull facets of k-element points with elements at 0.

    ``points``: (n, k) fractions over the system's k elements (rows sum to 1);
    ``energies``: (n,) eV/atom. Points above 0 can never be on the hull.
    """
    k = points.shape[1]
    below = energies < 0
    if not below.any():
        return np.zeros((1, k))  # only the elements: the hull is 0 everywhere
    corners = np.eye(k)
    x = np.concatenate([corners, points[below]])
    e = np.concatenate([np.zeros(k), energies[below]])
    if k == 2:
        return _binary_facets(x[:, 0], e)
    coords = np.column_stack([x[:, : k - 1], e])  # drop the last fraction (it is 1 - the others)
    try:
        hull = ConvexHull(coords)
    except QhullError:
        hull = ConvexHull(coords, qhull_options="QJ")  # joggle a degenerate set
    # Each lower facet's plane is solved exactly through its k vertices (Qhull's own
    # equations carry ~1e-7 eV/atom of rounding); a flat (zero-volume) simplex of a
    # triangulated facet repeats a neighbour's plane and is skipped.
    vertices = hull.simplices[hull.equations[:, k - 1] < _LOWER]
    a, b = x[vertices], e[vertices]  # (F, k, k) fractions, (F, k) energies
    solvable = np.abs(np.linalg.det(a)) > 1e-12
    return np.linalg.solve(a[solvable], b[solvable][..., None])[..., 0]


def _binary_facets(x0: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Lower hull of a binary by a monotone chain over the first element's fraction."""
    order = np.lexsort((e, x0))
    hull: list[int] = []
    for i in order:
        while len(hull) >= 2:
            (x1, e1), (x2, e2) = (x0[hull[-2]], e[hull[-2]]), (x0[hull[-1]], e[hull[-1]])
            if (x2 - x1) * (e[i] - e1) - (e2 - e1) * (x0[i] - x1) <= 0:
                hull.pop()  # the middle point is not below the chord
            else:
                break
        if hull and x0[hull[-1]] == x0[i]:
            continue  # same composition, higher energy
        hull.append(i)
    rows = []
    for i, j in zip(hull[:-1], hull[1:]):
        slope = (e[j] - e[i]) / (x0[j] - x0[i])
        b = e[i] - slope * x0[i]  # E = slope * x0 + b = (slope + b) x0 + b x1
        rows.append((slope + b, b))
    return np.array(rows)


def group_by_system(fractions: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    """Row indices of each chemical system (sorted element columns), in one whole-array pass."""
    present = fractions > 0
    masks, inverse = np.unique(present, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.cumsum(np.bincount(inverse.ravel(), minlength=len(masks)))[:-1]
    return {tuple(np.flatnonzero(m).tolist()): rows for m, rows in zip(masks, np.split(order, bounds))}


class HullIndex:
    """The known compounds, grouped by chemical system, with cached facet matrices.

    Args:
        fractions: (n, n_elements) element fractions of the known compounds.
        energies: (n,) formation energies in eV/atom.
        cache_size: systems whose facets are kept (least recently used dropped).
    """

    def __init__(self, fractions: np.ndarray, energies: np.ndarray, cache_size: int = 200_000):
        fractions = np.asarray(fractions, dtype=np.float64)
        energies = np.asarray(energies, dtype=np.float64)
        if len(fractions) != len(energies):
            raise ValueError(f"{len(fractions)} compositions but {len(energies)} energies")
        self.n_elements = fractions.shape[1]
        keep = (energies < 0) & ((fractions > 0).sum(axis=1) > 1)  # only these can be on a hull
        fractions, energies = fractions[keep], energies[keep]
        systems = group_by_system(fractions)
        self._points = {s: (fractions[np.ix_(rows, s)], energies[rows]) for s, rows in systems.items()}
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.n_computed = 0

    def points(self, system: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Known compounds of a system and of all its subsystems, in the system's columns."""
        position = {e: i for i, e in enumerate(system)}
        xs, es = [], []
        for r in range(2, len(system) + 1):
            for sub in itertools.combinations(system, r):
                found = self._points.get(sub)
                if found is None:
                    continue
                x = np.zeros((len(found[1]), len(system)))
                x[:, [position[e] for e in sub]] = found[0]
                xs.append(x)
                es.append(found[1])
        if not xs:
            return np.zeros((0, len(system))), np.zeros(0)
        return np.concatenate(xs), np.concatenate(es)

    def facets(self, system: tuple[int, ...]) -> np.ndarray:
        """(F, k) facet coefficients of a system (sorted element columns), cached."""
        cached = self._cache.get(system)
        if cached is not None:
            self._cache.move_to_end(system)
            return cached
        c = facet_coefficients(*self.points(system))
        self.n_computed += 1
        self._cache[system] = c
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return c

    def hull_energy(self, fractions: np.ndarray) -> np.ndarray:
        """Hull energy (eV/atom) at each row of (n, n_elements) fractions, any systems mixed."""
        fractions = np.asarray(fractions, dtype=np.float64)
        out = np.zeros(len(fractions))
        for system, rows in group_by_system(fractions).items():
            if len(system) < 2:
                continue
            x = fractions[np.ix_(rows, system)]
            out[rows] = (x @ self.facets(system).T).max(axis=1)
        return out

    def hull_energy_grouped(self, systems: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Hull energies for many systems of one arity at once.

        ``systems``: (m, k) sorted element columns; ``x``: (m, p, k) fractions of
        p compositions per system in those columns. Returns (m, p).
        """
        mats = [self.facets(tuple(s)) for s in systems.tolist()]
        width = max(len(c) for c in mats)
        # pad each system with copies of its first facet: a repeated plane never changes the max
        padded = np.stack([np.concatenate([c, np.repeat(c[:1], width - len(c), axis=0)]) for c in mats])
        return np.einsum("mpk,mfk->mpf", x, padded).max(axis=2)


# Ways to split a k-element composition into binary pieces (and single elements at 0):
# the hull lies on or below every such mixture, so each split gives an upper bound.
SPLITS: dict[int, tuple[tuple[tuple[int, int], ...], ...]] = {
    2: (((0, 1),),),
    3: (((0, 1),), ((0, 2),), ((1, 2),)),
    4: (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))),
}


class BinaryHullTable:
    """Every binary hull among the screened elements as one padded array.

    ``binary_bound`` gives, for millions of compositions at once, the lowest
    mixture of binary-hull points (and elements) that makes each composition:
    exact for binaries, and an upper bound on the hull energy for ternaries and
    quaternaries (so a composition predicted above ``bound - threshold`` can
    never be a candidate and its system's full hull is never needed).
    """

    def __init__(self, index: HullIndex, ids: np.ndarray):
        self.ids = np.asarray(ids)
        n = len(self.ids)
        mats = {(a, b): index.facets((int(self.ids[a]), int(self.ids[b])))
                for a in range(n) for b in range(a + 1, n)}
        width = max((len(c) for c in mats.values()), default=1)
        table = np.zeros((n, n, width, 2))
        for (a, b), c in mats.items():
            table[a, b] = np.concatenate([c, np.repeat(c[:1], width - len(c), axis=0)])
        self.table = table

    def pair_energy(self, a: np.ndarray, b: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """s * E_ab(xa/s) with s = xa + xb: the binary-hull energy of the a-b part, weighted.

        ``a``, ``b``: (m,) positions (a < b); ``xa``, ``xb``: (m, p) fractions.
        """
        c = self.table[a, b]  # (m, F, 2)
        return np.einsum("mp,mf->mpf", xa, c[:, :, 0]).__iadd__(np.einsum("mp,mf->mpf", xb, c[:, :, 1])).max(axis=2)

    def binary_bound(self, positions: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(m, p) bound for compositions x (m, p, k) of the element combinations ``positions`` (m, k)."""
        k = positions.shape[1]
        best = None
        for split in SPLITS[k]:
            total = sum(self.pair_energy(positions[:, i], positions[:, j], x[:, :, i], x[:, :, j]) for i, j in split)
            best = total if best is None else np.minimum(best, total)
        return best
