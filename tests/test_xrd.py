"""XRD physics and the simulated library: structures, Bragg's law, detector geometry, rings, cache."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from materials.composition_spread import (PAPER_COUNTS, PHASE_REGIONS, assign_regions, class_counts,
                                          wafer_compositions, wafer_positions)
from materials.xrd_geometry import PRESETS, integrate_1d, pixel_geometry
from materials.xrd_phases import PHASES, build_structure, powder_peaks
from materials.xrd_rings import poisson_counts, pseudo_voigt, pseudo_voigt_cdf, ring_profile, tch_pseudo_voigt

# phase: (reduced formula, formula units per cell Z, strongest reflection (h, k, l))
KNOWN = {"SnO2": ("SnO2", 2, (1, 1, 0)), "TiO2-rutile": ("TiO2", 2, (1, 1, 0)), "TiO2-anatase": ("TiO2", 4, (1, 0, 1)),
         "ZnO": ("ZnO", 2, (1, 0, 1)), "Zn2TiO4": ("Zn2TiO4", 8, (3, 1, 1)), "Zn2SnO4": ("Zn2SnO4", 8, (3, 1, 1)),
         "ZnTiO3": ("ZnTiO3", 6, (1, 0, 4))}


def d_spacing(name: str, hkl: tuple[int, int, int]) -> float:
    """d from the lattice constants by the crystal-system formulas (independent of pymatgen)."""
    system, a, c = PHASES[name].lattice
    h, k, l = hkl
    inv2 = {"cubic": lambda: (h * h + k * k + l * l) / a ** 2,
            "tetragonal": lambda: (h * h + k * k) / a ** 2 + l * l / c ** 2,
            "hexagonal": lambda: 4 / 3 * (h * h + h * k + k * k) / a ** 2 + l * l / c ** 2}[system]()
    return 1 / np.sqrt(inv2)


@pytest.mark.parametrize("name", sorted(PHASES))
def test_structures_have_their_formula_bonds_and_strongest_reflection(name):
    from pymatgen.core import Composition

    formula, z, strongest = KNOWN[name]
    s = build_structure(name)
    assert s.composition.reduced_composition.almost_equals(Composition(formula).reduced_composition)
    assert s.composition.num_atoms / Composition(formula).num_atoms == pytest.approx(z)  # a wrong origin choice fails
    oxygen = np.array(["O" in [e.symbol for e in site.species.elements] for site in s])
    d = s.distance_matrix + np.eye(len(s)) * 99
    assert 1.85 < d[np.ix_(~oxygen, oxygen)].min() < 2.15  # cation-oxygen bonds of these oxides
    assert d[np.ix_(oxygen, oxygen)].min() > 2.4
    peaks = powder_peaks(name, 1.5406, (10.0, 80.0))
    assert peaks.hkl[int(np.argmax(peaks.intensity))] == strongest


@pytest.mark.parametrize("name", sorted(PHASES))
@pytest.mark.parametrize("wavelength", [0.9762, 1.5406])
def test_peak_positions_obey_braggs_law(name, wavelength):
    peaks = powder_peaks(name, wavelength, (5.0, 80.0))
    d = np.array([d_spacing(name, hkl) for hkl in peaks.hkl])
    np.testing.assert_allclose(peaks.d, d, rtol=1e-6)
    np.testing.assert_allclose(peaks.two_theta, 2 * np.rad2deg(np.arcsin(wavelength / (2 * d))), atol=1e-6)
    tth, _ = peaks.strained(0.01)  # a 1 % larger lattice: every d grows by 1 %, 2θ from Bragg's law again
    np.testing.assert_allclose(tth, 2 * np.rad2deg(np.arcsin(wavelength / (2 * 1.01 * d))), atol=1e-6)


def test_march_dollase_is_neutral_at_r1_and_enhances_the_preferred_plane():
    peaks = powder_peaks("ZnO", 1.5406, (10.0, 80.0))
    np.testing.assert_allclose(peaks.march_dollase(1.0), 1.0)
    k002 = peaks.hkl.index((0, 0, 2))
    assert peaks.march_dollase(0.7)[k002] == pytest.approx(0.7 ** -3)  # both normals along the fibre axis
    k100 = peaks.hkl.index((1, 0, 0))
    assert peaks.march_dollase(0.7)[k100] == pytest.approx(0.7 ** 1.5)  # all six normals perpendicular to it


def _two_theta_by_hand(frame, size):
    """2θ of every pixel centre from the detector plane written out in the lab frame (beam along z):
    the detector is normal to the ray at 2θ = tilt, its centre on that ray at ``distance``, and 2θ
    grows down the rows (vertical scattering plane) or along the columns (horizontal)."""
    tau, pixel = np.deg2rad(frame.tilt), frame.side / size
    offset = (np.arange(size) + 0.5) * pixel - frame.side / 2
    along, across = (offset[:, None], offset[None, :]) if frame.axis == "vertical" else (offset[None, :], offset[:, None])
    in_plane = frame.distance * np.sin(tau) + along * np.cos(tau)
    beam = frame.distance * np.cos(tau) - along * np.sin(tau)
    return np.rad2deg(np.arctan2(np.sqrt(in_plane ** 2 + across ** 2), beam))


@pytest.mark.parametrize("preset,frame", [("SLAC", 0), ("NIST", 0), ("NIST", 1)])
def test_two_theta_per_pixel_equals_pyfai_and_frames_span_the_papers_ranges(preset, frame):
    geometry = PRESETS[preset].frames[frame]
    pixels = pixel_geometry(geometry, 128)
    np.testing.assert_allclose(pixels.two_theta, _two_theta_by_hand(geometry, 128), atol=1e-5)
    lo, hi = geometry.nominal_range
    if preset == "SLAC":  # the whole frame, corner to corner
        assert (pixels.two_theta_min.min(), pixels.two_theta_max.max()) == pytest.approx((lo, hi), abs=0.01)
    else:  # along the central row
        edge = pixels.two_theta_min[64].min(), pixels.two_theta_max[64].max()
        assert edge == pytest.approx((lo, hi), abs=0.05)
    assert (pixels.solid_angle > 0).all() and (pixels.two_theta_max > pixels.two_theta_min).all()


def test_tch_pseudo_voigt_matches_a_voigt_and_has_unit_area():
    from scipy.special import voigt_profile

    x = np.linspace(-5, 5, 200_001)
    for g, lo in [(0.2, 0.0), (0.0001, 0.3), (0.2, 0.15), (0.1, 0.4)]:
        fwhm, eta = tch_pseudo_voigt(g, lo)
        voigt = voigt_profile(x, g / (2 * np.sqrt(2 * np.log(2))) + 1e-12, lo / 2)
        above = x[voigt >= voigt.max() / 2]
        assert fwhm == pytest.approx(above[-1] - above[0], rel=0.015)
        pv = pseudo_voigt(x, 0.0, fwhm, eta)
        above = x[pv >= pv.max() / 2]
        assert above[-1] - above[0] == pytest.approx(fwhm, rel=1e-3)
        cdf = pseudo_voigt_cdf(x, 0.0, fwhm, eta)
        np.testing.assert_allclose(np.gradient(cdf, x), pv, atol=2e-3 * pv.max())
    assert tch_pseudo_voigt(0.2, 0.0)[1] == 0 and tch_pseudo_voigt(1e-6, 0.3)[1] == pytest.approx(1, abs=1e-4)


def test_a_rendered_ring_integrates_back_to_its_position_width_and_area():
    frame = PRESETS["NIST"].frames[0]
    pixels = pixel_geometry(frame, 512)
    fwhm, eta = tch_pseudo_voigt(np.array([0.25]), np.array([0.2]))
    image = ring_profile(pixels, np.array([27.0]), np.array([1.0]), fwhm, eta)
    tth, profile = integrate_1d(image[None], frame, 3000, (20.0, 34.0))
    step = tth[1] - tth[0]
    assert tth[np.argmax(profile[0])] == pytest.approx(27.0, abs=step)
    above = tth[profile[0] >= profile[0].max() / 2]
    assert above[-1] - above[0] == pytest.approx(fwhm[0], abs=0.06)  # plus the pixel's own 2θ span
    assert profile[0].sum() * step == pytest.approx(1.0, rel=0.03)


def test_poisson_counts_have_variance_equal_to_mean_and_refuse_negative_expectations():
    counts = poisson_counts(np.full((400, 400), 50.0), np.random.default_rng(0))
    assert counts.dtype == np.uint32 and counts.mean() == pytest.approx(50, rel=0.01)
    assert counts.var() / counts.mean() == pytest.approx(1.0, rel=0.03)
    with pytest.raises(ValueError, match="non-negative"):
        poisson_counts(np.array([1.0, -1.0]), np.random.default_rng(0))


def test_library_has_papers_class_counts_compositions_and_phases():
    from datamodules.simulate.xrd import PHASE_NAMES, XRDDatasetSpec, library

    lib = library(XRDDatasetSpec(n_samples=177))
    counts = np.bincount(lib["label"], minlength=8)
    assert sorted(counts) == sorted(PAPER_COUNTS) and counts.max() == 37 and counts.min() == 7
    np.testing.assert_allclose(lib["composition"].sum(1), 1.0)
    np.testing.assert_allclose(lib["phase_fraction"].sum(1), 1.0)
    for k, region in enumerate(PHASE_REGIONS):
        present = lib["phase_fraction"][lib["label"] == k] > 0
        expected = np.isin(PHASE_NAMES, region.phases)
        assert (present == expected).all(), region.name
    scaled = class_counts(40)
    assert scaled.sum() == 40 and scaled.min() >= 2
    # without the boundary perturbation each region is the power-diagram cell: compositions closer to its centre
    comp = wafer_compositions(wafer_positions(177))
    labels = assign_regions(comp, class_counts(177), np.random.default_rng(0), perturbation=0.0)
    centres = np.array([r.centre for r in PHASE_REGIONS])
    cost = ((comp[:, None] - centres[None]) ** 2).sum(-1)
    for i, j in zip(*np.nonzero(labels[:, None] != labels[None, :])):  # no swap of two samples lowers the cost
        if i < j:
            assert cost[i, labels[i]] + cost[j, labels[j]] <= cost[i, labels[j]] + cost[j, labels[i]] + 1e-12


def test_simulated_cache_resumes_to_the_same_file_and_regenerates_a_corrupt_one(tmp_path):
    import h5py

    from datamodules.simulate.xrd import XRDDatasetSpec, generate, open_checked

    spec = XRDDatasetSpec(preset="NIST", n_samples=20, frame_size=32, batch=8)
    path = generate(spec, tmp_path / "a", progress=False)
    with open_checked(path, spec) as h:
        full = h["frames"][:]
        assert full.shape == (20, 2, 32, 32) and full.dtype == np.uint32
        assert json.loads(h.attrs["spec"])["n_samples"] == 20
        assert (h["frames"][:, 1].mean((1, 2)) > 0).all()
    with h5py.File(path, "r+") as h:  # as if killed after the first batch
        h.attrs["n_done"] = 8
        h["frames"][8:] = 0
    with pytest.raises(ValueError, match="only 8 of 20"):
        open_checked(path, spec)
    generate(spec, tmp_path / "a", progress=False)
    with open_checked(path, spec) as h:
        np.testing.assert_array_equal(h["frames"][:], full)
    with pytest.raises(ValueError, match="other parameters"):
        open_checked(path, XRDDatasetSpec(preset="NIST", n_samples=20, frame_size=32, seed=1))
    with h5py.File(path, "r") as h:
        offset = h["frames"].id.get_chunk_info(5).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate(spec, tmp_path / "a", progress=False)
    assert any("checksum" in str(w.message) for w in caught)
    with open_checked(path, spec) as h:
        np.testing.assert_array_equal(h["frames"][:], full)
