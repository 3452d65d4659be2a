"""How far a composition lies from a model's training data: the extrapolation flag.

Two measures, both in the element-fraction space every composition model here reads:

- ``chemical_system_seen``: whether some training composition has exactly the same set of elements (a Ti–O
  compound is in the Ti–O system; a model that never saw Ti with O is extrapolating there);
- ``nearest_distance``: the Euclidean distance to the nearest training composition's fraction vector.

:class:`ExtrapolationFlag` raises the flag when the system is unseen or the distance exceeds a threshold
chosen on held-out rows of the same distribution (by default the 95th percentile of the validation rows'
nearest distance): in-distribution rows are flagged 5 % of the time by the distance alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def chemical_systems(fractions: np.ndarray) -> np.ndarray:
    """One integer per distinct set of elements present (bit-packed presence)."""
    present = np.packbits(np.asarray(fractions) > 0, axis=1)
    void = np.ascontiguousarray(present).view(np.dtype((np.void, present.shape[1])))
    return void.ravel()


def nearest_distance(queries: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each query row, the Euclidean distance to its nearest ``reference`` row: the nearest found by
    squared distances ‖q‖² + ‖r‖² − 2 q·r in float32 matrix products (chunked), its distance then computed
    exactly in float64 (0 for a training composition itself)."""
    reference = np.asarray(reference, dtype=np.float64)
    ref = torch.from_numpy(reference.astype(np.float32))
    ref_sq = (ref * ref).sum(1)
    nearest = []
    for start in range(0, len(queries), chunk):
        q = torch.from_numpy(np.asarray(queries[start:start + chunk], dtype=np.float32))
        nearest.append(((q * q).sum(1, keepdim=True) + ref_sq[None] - 2 * q @ ref.T).argmin(1).numpy())
    if not nearest:
        return np.empty(0)
    return np.linalg.norm(np.asarray(queries, dtype=np.float64) - reference[np.concatenate(nearest)], axis=1)


@dataclass
class ExtrapolationFlag:
    """The training compositions and the distance threshold; :meth:`assess` flags new rows."""

    train: np.ndarray
    threshold: float

    @classmethod
    def fit(cls, train: np.ndarray, held_out: np.ndarray, quantile: float = 0.95, sample: int = 4000,
            seed: int = 0) -> ExtrapolationFlag:
        """The threshold: the ``quantile`` of ``held_out`` rows' nearest distance to ``train`` (at most
        ``sample`` of them, seeded)."""
        rows = np.random.default_rng(seed).permutation(len(held_out))[:sample]
        return cls(np.asarray(train), float(np.quantile(nearest_distance(held_out[rows], train), quantile)))

    def assess(self, fractions: np.ndarray) -> dict[str, np.ndarray]:
        """Per row: ``nearest_training_distance``, ``chemical_system_seen`` and ``extrapolation``."""
        distance = nearest_distance(fractions, self.train)
        seen = np.isin(chemical_systems(fractions), chemical_systems(self.train))
        return {"nearest_training_distance": distance, "chemical_system_seen": seen,
                "extrapolation": ~seen | (distance > self.threshold)}
