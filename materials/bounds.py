"""Exact results and bounds for C1111 of two isotropic phases at volume fraction f of phase 1.

- Rule of mixtures: Voigt (uniform strain, ⟨C⟩) and Reuss (uniform stress, ⟨S⟩⁻¹); every
  microstructure lies between them.
- Hashin–Shtrikman (J. Mech. Phys. Solids 11, 127 (1963)): the tightest bounds for
  statistically isotropic two-phase media, on the bulk and shear moduli; C1111 = K + 4G/3.
- Laminates (Backus, J. Geophys. Res. 67, 4427 (1962)): the exact C1111 when the layers are
  normal to the loading (a Reuss average of λ+2μ) or contain it (in-plane).

These are the checks of the solver in :mod:`materials.elasticity` and the rule-of-mixtures
baseline of the homogenization task. Every function takes arrays of ``f`` (numpy).
"""

from __future__ import annotations

import numpy as np

from materials.elasticity import TwoPhaseElasticity


def _mix(f, a0, a1):
    return (1 - f) * a0 + f * a1


def voigt_c11(f, material: TwoPhaseElasticity) -> np.ndarray:
    """⟨λ + 2μ⟩: the uniform-strain (upper) bound."""
    return _mix(np.asarray(f, dtype=float), *material.c11())


def reuss_c11(f, material: TwoPhaseElasticity) -> np.ndarray:
    """(⟨S⟩⁻¹)1111 with ⟨S⟩ isotropic: K_R + 4 G_R / 3 with 1/K_R = ⟨1/K⟩, 1/G_R = ⟨1/G⟩ (lower bound)."""
    f = np.asarray(f, dtype=float)
    (k0, k1), (g0, g1) = material.bulk_shear()
    k = 1 / _mix(f, 1 / k0, 1 / k1)
    g = 1 / _mix(f, 1 / g0, 1 / g1)
    return k + 4 * g / 3


def hashin_shtrikman_c11(f, material: TwoPhaseElasticity) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) HS bounds of K + 4G/3 (assumes phase 1 is stiffer in both K and G)."""
    f = np.asarray(f, dtype=float)
    (k0, k1), (g0, g1) = material.bulk_shear()
    if k1 < k0 or g1 < g0:
        raise ValueError("hashin_shtrikman_c11 expects phase 1 stiffer in bulk and shear modulus")

    def bound(k_ref, g_ref, f_ref, k_other, g_other, f_other):
        k = k_ref + f_other / (1 / (k_other - k_ref) + 3 * f_ref / (3 * k_ref + 4 * g_ref))
        g = g_ref + f_other / (1 / (g_other - g_ref) + 6 * f_ref * (k_ref + 2 * g_ref) / (5 * g_ref * (3 * k_ref + 4 * g_ref)))
        return k + 4 * g / 3

    with np.errstate(divide="ignore", invalid="ignore"):
        lower = bound(k0, g0, 1 - f, k1, g1, f)
        upper = bound(k1, g1, f, k0, g0, 1 - f)
    lower = np.where(f <= 0, material.c11()[0], np.where(f >= 1, material.c11()[1], lower))
    upper = np.where(f <= 0, material.c11()[0], np.where(f >= 1, material.c11()[1], upper))
    return lower, upper


def laminate_c11(f, material: TwoPhaseElasticity, layers: str) -> np.ndarray:
    """Exact C1111 of a laminate: ``layers='normal'`` (layers ⟂ x1) or ``'in_plane'`` (x1 in the layers)."""
    f = np.asarray(f, dtype=float)
    (l0, l1), (m0, m1) = material.lame()
    p0, p1 = l0 + 2 * m0, l1 + 2 * m1
    if layers == "normal":  # σ11 uniform across layers, ε22 = ε33 = 0: Reuss average of λ+2μ
        return 1 / _mix(f, 1 / p0, 1 / p1)
    if layers == "in_plane":  # ε11 uniform; σ22 uniform with ⟨ε22⟩ = 0 (layers ⟂ x2)
        inv = _mix(f, 1 / p0, 1 / p1)
        lam_over_p = _mix(f, l0 / p0, l1 / p1)
        return _mix(f, p0 - l0**2 / p0, p1 - l1**2 / p1) + lam_over_p**2 / inv
    raise ValueError(f"layers must be 'normal' or 'in_plane', got {layers!r}")
