"""Crystal phases of the Sn–Ti–Zn–O library and their powder diffraction peaks (diss. ch. 7).

Each phase is built with pymatgen from its space group, published lattice constants and
Wyckoff positions (:data:`PHASES`, sources cited per phase); its powder peaks come from
pymatgen's ``XRDCalculator`` (kinematic |F|², multiplicity, unpolarised Lorentz–polarisation
factor). :class:`PowderPeaks` keeps, per reflection, the d-spacing, the integrated intensity
and the unit normals of every plane of its family, so that a sample can shift the peaks by a
lattice strain (Bragg's law, :func:`bragg_two_theta`) and reweight them by March–Dollase
preferred orientation (:meth:`PowderPeaks.march_dollase`) without a new structure-factor sum.

Settings: pymatgen's ``Structure.from_spacegroup`` uses the ITA origin choice 1 for
I4₁/amd and Fd-3m, so anatase has Ti at (0, 0, 0) and the spinels their tetrahedral A site at
(0, 0, 0), octahedral B at (5/8, 5/8, 5/8) and O at (x, x, x) with x ≈ 0.385 (0.26 in origin
choice 2). The tests check density, shortest cation–oxygen distances and the strongest
reflection of every phase against the known values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class PhaseSpec:
    """A crystal phase as a crystallographer writes it down."""

    name: str
    mineral: str
    space_group: int
    lattice: tuple[str, float, float]  # (system, a, c) in Å; cubic ignores c
    species: tuple
    coords: tuple
    preferred_plane: tuple[int, int, int]  # film texture: planes that tend to lie parallel to the substrate
    source: str
    cations: dict = field(default_factory=dict)  # cation fractions of the formula (Sn, Ti, Zn)


PHASES: dict[str, PhaseSpec] = {
    "SnO2": PhaseSpec(
        "SnO2", "cassiterite (rutile type)", 136, ("tetragonal", 4.7374, 3.1864),
        ("Sn", "O"), ((0, 0, 0), (0.3056, 0.3056, 0)), (1, 1, 0),
        "Bolzan, Fong, Kennedy, Howard, Acta Cryst. B53, 373 (1997): a = 4.7374, c = 3.1864 Å, x(O) = 0.3056",
        {"Sn": 1.0}),
    "TiO2-rutile": PhaseSpec(
        "TiO2-rutile", "rutile", 136, ("tetragonal", 4.59373, 2.95812),
        ("Ti", "O"), ((0, 0, 0), (0.30476, 0.30476, 0)), (1, 1, 0),
        "Burdett, Hughbanks, Miller, Richardson, Smith, J. Am. Chem. Soc. 109, 3639 (1987), 295 K: "
        "a = 4.59373, c = 2.95812 Å, x(O) = 0.30476", {"Ti": 1.0}),
    "TiO2-anatase": PhaseSpec(
        "TiO2-anatase", "anatase", 141, ("tetragonal", 3.78479, 9.51237),
        ("Ti", "O"), ((0, 0, 0), (0, 0, 0.20806)), (0, 0, 1),
        "Burdett et al., J. Am. Chem. Soc. 109, 3639 (1987), 295 K: a = 3.78479, c = 9.51237 Å, z(O) = 0.20806 "
        "(origin choice 1)", {"Ti": 1.0}),
    "ZnO": PhaseSpec(
        "ZnO", "zincite (wurtzite type)", 186, ("hexagonal", 3.2498, 5.2066),
        ("Zn", "O"), ((1 / 3, 2 / 3, 0), (1 / 3, 2 / 3, 0.3819)), (0, 0, 1),
        "Kisi, Elcombe, Acta Cryst. C45, 1867 (1989): a = 3.2498, c = 5.2066 Å, u = 0.3819", {"Zn": 1.0}),
    "Zn2TiO4": PhaseSpec(
        "Zn2TiO4", "inverse spinel", 227, ("cubic", 8.4596, 0.0),
        ({"Zn": 1.0}, {"Zn": 0.5, "Ti": 0.5}, "O"), ((0, 0, 0), (0.625, 0.625, 0.625), (0.385, 0.385, 0.385)),
        (1, 1, 1),
        "ICDD PDF 25-1164: a = 8.4596 Å; inverse spinel (Zn on the tetrahedral site, Zn/Ti 1:1 on the octahedral "
        "site), x(O) = 0.385 in origin choice 1, typical of inverse spinels", {"Zn": 2 / 3, "Ti": 1 / 3}),
    "Zn2SnO4": PhaseSpec(
        "Zn2SnO4", "inverse spinel", 227, ("cubic", 8.6574, 0.0),
        ({"Zn": 1.0}, {"Zn": 0.5, "Sn": 0.5}, "O"), ((0, 0, 0), (0.625, 0.625, 0.625), (0.385, 0.385, 0.385)),
        (1, 1, 1),
        "ICDD PDF 24-1470: a = 8.6574 Å; inverse spinel as Zn2TiO4", {"Zn": 2 / 3, "Sn": 1 / 3}),
    "ZnTiO3": PhaseSpec(
        "ZnTiO3", "ilmenite type", 148, ("hexagonal", 5.0787, 13.927),
        ("Zn", "Ti", "O"), ((0, 0, 0.3554), (0, 0, 0.1464), (0.317, 0.020, 0.2466)), (0, 0, 1),
        "ICDD PDF 26-1500: a = 5.0787, c = 13.927 Å; positions of ilmenite FeTiO3 (Wechsler, Prewitt, "
        "Am. Mineral. 69, 176 (1984)) with Zn on the Fe site", {"Zn": 0.5, "Ti": 0.5}),
}
CATIONS = ("Sn", "Ti", "Zn")


def build_structure(name: str):
    """The pymatgen ``Structure`` of phase ``name`` (conventional cell)."""
    from pymatgen.core import Lattice, Structure

    spec = PHASES[name]
    system, a, c = spec.lattice
    lattice = {"tetragonal": lambda: Lattice.tetragonal(a, c), "hexagonal": lambda: Lattice.hexagonal(a, c),
               "cubic": lambda: Lattice.cubic(a)}[system]()
    return Structure.from_spacegroup(spec.space_group, lattice, list(spec.species), [list(x) for x in spec.coords])


def cation_vector(name: str) -> np.ndarray:
    """Cation fractions (Sn, Ti, Zn) of the phase's formula."""
    return np.array([PHASES[name].cations.get(el, 0.0) for el in CATIONS])


def lorentz_polarization(two_theta_deg: np.ndarray) -> np.ndarray:
    """Powder Lorentz–polarisation factor for an unpolarised beam, (1 + cos²2θ) / (sin²θ cosθ) (pymatgen's)."""
    t = np.deg2rad(np.asarray(two_theta_deg, dtype=float))
    return (1 + np.cos(t) ** 2) / (np.sin(t / 2) ** 2 * np.cos(t / 2))


def bragg_two_theta(d: np.ndarray, wavelength: float) -> np.ndarray:
    """2θ (degrees) of planes of spacing ``d`` (Å): λ = 2 d sinθ. NaN where λ > 2d (no reflection)."""
    s = wavelength / (2 * np.asarray(d, dtype=float))
    with np.errstate(invalid="ignore"):
        return np.where(s <= 1, 2 * np.rad2deg(np.arcsin(np.minimum(s, 1))), np.nan)


@dataclass(frozen=True)
class PowderPeaks:
    """The reflections of one phase at one wavelength (unstrained lattice).

    ``intensity`` is pymatgen's unscaled integrated intensity (|F|² × multiplicity × LP) per unit
    cell; ``normals`` is (K, M, 3): the unit normals of the M planes of each reflection's family
    (rows padded with NaN where a family has fewer members).
    """

    phase: str
    wavelength: float
    d: np.ndarray
    two_theta: np.ndarray
    intensity: np.ndarray
    hkl: tuple
    normals: np.ndarray
    preferred: np.ndarray  # unit normal of the preferred plane
    cell_volume: float
    cations_per_cell: float

    def strained(self, strain: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(2θ, intensity) after an isotropic lattice strain: d → d(1 + ε), LP re-evaluated at the new angle."""
        d = self.d * (1 + np.asarray(strain, dtype=float))
        tth = bragg_two_theta(d, self.wavelength)
        return tth, self.intensity * lorentz_polarization(tth) / lorentz_polarization(self.two_theta)

    def march_dollase(self, r: float) -> np.ndarray:
        """March–Dollase factor per reflection, averaged over the planes of its family:
        (r² cos²α + sin²α / r)^(-3/2), α between the plane normal and the preferred normal; r = 1: random."""
        cos2 = np.einsum("kmi,i->km", self.normals, self.preferred) ** 2
        factor = (r ** 2 * cos2 + (1 - cos2) / r) ** -1.5
        return np.nanmean(factor, axis=1)


def _family_normals(structure, rotations: np.ndarray, hkls: list[tuple[int, ...]]) -> np.ndarray:
    """Unit normals of every plane equivalent to the given (h k l) under the crystal's Laue group
    (its point-group rotations, Cartesian, and the inversion of Friedel's law)."""
    g = structure.lattice.reciprocal_lattice_crystallographic.get_cartesian_coords(np.array(hkls, dtype=float))
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    members = np.einsum("rij,hj->rhi", rotations, g).reshape(-1, 3)
    return np.unique(np.round(np.concatenate([members, -members]), 8), axis=0)


@lru_cache(maxsize=64)
def powder_peaks(name: str, wavelength: float, two_theta_range: tuple[float, float]) -> PowderPeaks:
    """The reflections of phase ``name`` inside ``two_theta_range`` (degrees) at ``wavelength`` (Å)."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    structure = build_structure(name)
    pattern = XRDCalculator(wavelength=wavelength).get_pattern(structure, scaled=False,
                                                               two_theta_range=two_theta_range)
    families = [[tuple(h["hkl"][:2]) + (h["hkl"][-1],) for h in peak] for peak in pattern.hkls]  # hkil -> hkl
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    rotations = np.array([op.rotation_matrix for op in
                          SpacegroupAnalyzer(structure).get_point_group_operations(cartesian=True)])
    sets = [_family_normals(structure, rotations, fam) for fam in families]
    normals = np.full((len(sets), max(len(s) for s in sets), 3), np.nan)
    for k, s in enumerate(sets):
        normals[k, :len(s)] = s
    pref = structure.lattice.reciprocal_lattice_crystallographic.get_cartesian_coords(PHASES[name].preferred_plane)
    cations = sum(occ for site in structure for el, occ in site.species.items() if el.symbol in CATIONS)
    return PowderPeaks(name, wavelength, np.asarray(pattern.d_hkls, float),
                       bragg_two_theta(np.asarray(pattern.d_hkls, float), wavelength), np.asarray(pattern.y, float),
                       tuple(tuple(f[0]) for f in families), normals, pref / np.linalg.norm(pref),
                       float(structure.volume), float(cations))
