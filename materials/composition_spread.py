"""A Sn–Ti–Zn–O composition-spread library and its phase-region map (diss. 7.3.2).

The library is a co-sputtered wafer: samples sit on the square grid of sample positions
closest to the wafer centre (177 of them by default, the paper's count), and each position's
cation fractions (Sn, Ti, Zn) follow from three sputter guns whose deposition rate falls off
as a Gaussian of the distance to each gun (:func:`wafer_compositions`). Oxygen is present but
not controlled, as in the paper, so a composition is the three cation fractions (sum 1).

Phase regions: eight classes, pure and mixed (:data:`PHASE_REGIONS`), each a set of phases of
:mod:`materials.xrd_phases` centred on a composition. Samples are assigned to regions with
prescribed, imbalanced counts (37 ... 7 as the paper's Fig. 7.2; scaled for another sample
count) by the capacity-constrained assignment that minimises the total squared distance
between a sample's composition and its region's centre: the regions it produces are the cells
of a power diagram, i.e. contiguous, convex areas of the composition triangle. The composition
used for the assignment carries a small per-sample perturbation (unobserved local oxygen and
thermal history), so near a boundary the region is not a function of the stored composition
and the phases must be read from the diffraction frame.

Inside a two-phase region the phase amounts follow the lever rule on the tie line between
the two phases' cation compositions (clipped to ``[floor, 1 - floor]`` so both phases of the
label are present), then convert to volume fractions with each phase's volume per cation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from materials.xrd_phases import cation_vector


@dataclass(frozen=True)
class PhaseRegion:
    name: str
    phases: tuple[str, ...]
    centre: tuple[float, float, float]  # cation fractions (Sn, Ti, Zn)


PHASE_REGIONS: tuple[PhaseRegion, ...] = (
    PhaseRegion("ZnO", ("ZnO",), (0.05, 0.05, 0.90)),
    PhaseRegion("ZnO+Zn2SnO4", ("ZnO", "Zn2SnO4"), (0.20, 0.05, 0.75)),
    PhaseRegion("Zn2SnO4+SnO2", ("Zn2SnO4", "SnO2"), (0.55, 0.05, 0.40)),
    PhaseRegion("SnO2", ("SnO2",), (0.85, 0.08, 0.07)),
    PhaseRegion("SnO2+TiO2-rutile", ("SnO2", "TiO2-rutile"), (0.45, 0.45, 0.10)),
    PhaseRegion("TiO2-anatase", ("TiO2-anatase",), (0.07, 0.86, 0.07)),
    PhaseRegion("ZnTiO3+TiO2-anatase", ("ZnTiO3", "TiO2-anatase"), (0.05, 0.70, 0.25)),
    PhaseRegion("ZnO+Zn2TiO4", ("ZnO", "Zn2TiO4"), (0.05, 0.22, 0.73)),
)
# samples per region for 177 samples, imbalanced as Fig. 7.2 (largest 37, smallest 7); the largest count
# goes to the region that holds the most samples before counts are imposed (:func:`assign_regions`)
PAPER_COUNTS = (37, 31, 27, 24, 20, 17, 14, 7)


def class_counts(n_samples: int, counts: tuple[int, ...] = PAPER_COUNTS, minimum: int = 2) -> np.ndarray:
    """``counts`` rescaled to ``n_samples`` by largest remainders, each at least ``minimum``."""
    counts = np.asarray(counts, dtype=float)
    if n_samples < minimum * len(counts):
        raise ValueError(f"{n_samples} samples cannot hold {len(counts)} classes of at least {minimum} samples")
    if n_samples == counts.sum():
        return counts.astype(int)
    share = np.maximum(counts / counts.sum() * n_samples, minimum)
    out = np.floor(share).astype(int)
    for k in np.argsort(-(share - out))[: n_samples - out.sum()]:
        out[k] += 1
    while out.sum() > n_samples:  # the minimum pushed the total over: take from the largest
        out[np.argmax(out)] -= 1
    return out


def wafer_positions(n_samples: int) -> np.ndarray:
    """(n, 2) integer grid positions nearest the wafer centre (ties broken by angle), centre at 0."""
    r = int(np.ceil(np.sqrt(n_samples / np.pi))) + 2
    x, y = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    xy = np.stack([x.ravel(), y.ravel()], 1)
    order = np.lexsort((np.arctan2(xy[:, 1], xy[:, 0]), (xy ** 2).sum(1)))
    return xy[order[:n_samples]]


def wafer_compositions(positions: np.ndarray, gun_distance: float = 1.0, spread: float = 0.75) -> np.ndarray:
    """Cation fractions (Sn, Ti, Zn) at wafer ``positions`` from three guns at 90°, 210° and 330°.

    Lengths are in units of the wafer radius (the farthest sample); each gun deposits at a rate
    ``exp(-|p - gun|² / (2 spread²))``.
    """
    p = positions / np.sqrt((positions ** 2).sum(1).max())
    angles = np.deg2rad([90.0, 210.0, 330.0])
    guns = gun_distance * np.stack([np.cos(angles), np.sin(angles)], 1)
    rate = np.exp(-((p[:, None, :] - guns[None]) ** 2).sum(-1) / (2 * spread ** 2))
    return rate / rate.sum(1, keepdims=True)


def assign_regions(composition: np.ndarray, counts: np.ndarray, rng: np.random.Generator,
                   perturbation: float = 0.02, regions: tuple[PhaseRegion, ...] = PHASE_REGIONS) -> np.ndarray:
    """Region index per sample, minimising the total squared distance between (perturbed) compositions and
    region centres (a power diagram of the centres) with the sizes ``counts``: the largest count goes to the
    region nearest to the most samples, the next to the next, and so on."""
    from scipy.optimize import linear_sum_assignment

    counts = np.sort(np.asarray(counts))[::-1]
    if counts.sum() != len(composition) or len(counts) != len(regions):
        raise ValueError(f"counts {counts.tolist()} must give one of {len(regions)} regions to each of "
                         f"{len(composition)} samples")
    centres = np.array([r.centre for r in regions])
    natural = np.bincount(((composition[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1), minlength=len(regions))
    counts = counts[np.argsort(np.lexsort((np.arange(len(regions)), -natural)))]
    seen = composition + rng.normal(0, perturbation, composition.shape)
    cost = ((seen[:, None, :] - centres[None]) ** 2).sum(-1)
    slots = np.repeat(np.arange(len(regions)), counts)
    rows, cols = linear_sum_assignment(cost[:, slots])
    labels = np.empty(len(composition), dtype=np.int64)
    labels[rows] = slots[cols]
    return labels


def volume_per_cation(phase_volumes: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Å³ per cation of each phase from (cell volume, cations per cell)."""
    return {name: v / n for name, (v, n) in phase_volumes.items()}


def phase_fractions(composition: np.ndarray, labels: np.ndarray, phase_names: tuple[str, ...],
                    cation_volume: dict[str, float], floor: float = 0.15,
                    regions: tuple[PhaseRegion, ...] = PHASE_REGIONS) -> np.ndarray:
    """(n, n_phases) volume fractions: lever rule on each two-phase region's tie line, 1 in a one-phase region."""
    out = np.zeros((len(composition), len(phase_names)))
    for k, region in enumerate(regions):
        rows = np.flatnonzero(labels == k)
        cols = [phase_names.index(p) for p in region.phases]
        if len(cols) == 1:
            out[rows, cols[0]] = 1.0
            continue
        a, b = cation_vector(region.phases[0]), cation_vector(region.phases[1])
        t = np.clip(((composition[rows] - a) @ (b - a)) / ((b - a) @ (b - a)), floor, 1 - floor)  # share of b
        cation_share = np.stack([1 - t, t], 1)
        volume = cation_share * np.array([cation_volume[p] for p in region.phases])
        out[np.ix_(rows, cols)] = volume / volume.sum(1, keepdims=True)
    return out
