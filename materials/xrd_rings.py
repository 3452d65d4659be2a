"""Debye–Scherrer rings, texture, background and counting noise on an area detector.

A phase with volume fraction v contributes to pixel p (2θ_p, χ_p, solid angle Ω_p)

    counts_p = flux · Ω_p · P_p / (2π sin 2θ_p) · T(2θ_p, χ_p) · Σ_k I_k · ⟨φ_k⟩_p

where I_k is the reflection's integrated powder intensity (|F|² m LP / V², pymatgen, times v and
its March–Dollase factor), 1/(2π sin 2θ) spreads it around the Debye cone, P_p is the beam's
polarisation over the unpolarised factor already inside LP, T is the spotty-ring texture field
(mean 1) and ⟨φ_k⟩_p is the pseudo-Voigt profile averaged over the pixel's 2θ span (exactly: the
difference of its cumulative at the pixel's corner extremes over the span, so a ring narrower
than a pixel keeps its area at any frame size). The profile is Thompson–Cox–Hastings: Gaussian
instrumental width (Caglioti) and Lorentzian Scherrer size width combined into one FWHM and
mixing η. Background is added per solid angle and the expected counts are Poisson-sampled.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from materials.xrd_geometry import PixelGeometry


def tch_pseudo_voigt(fwhm_gauss: np.ndarray, fwhm_lorentz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thompson, Cox, Hastings, J. Appl. Cryst. 20, 79 (1987): the pseudo-Voigt (FWHM, η) of a Voigt."""
    g, lo = np.asarray(fwhm_gauss, float), np.asarray(fwhm_lorentz, float)
    fwhm = (g ** 5 + 2.69269 * g ** 4 * lo + 2.42843 * g ** 3 * lo ** 2 + 4.47163 * g ** 2 * lo ** 3
            + 0.07842 * g * lo ** 4 + lo ** 5) ** 0.2
    q = lo / fwhm
    return fwhm, np.clip(1.36603 * q - 0.47719 * q ** 2 + 0.11116 * q ** 3, 0.0, 1.0)


def pseudo_voigt_cdf(x: np.ndarray, centre: np.ndarray, fwhm: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Cumulative of the unit-area pseudo-Voigt η·Lorentz + (1 − η)·Gauss of one FWHM (broadcasts)."""
    u = (x - centre) / fwhm
    lorentz = 0.5 + np.arctan(2 * u) / np.pi
    gauss = 0.5 * (1 + erf(2 * np.sqrt(np.log(2)) * u))
    return eta * lorentz + (1 - eta) * gauss


def pseudo_voigt(x: np.ndarray, centre: np.ndarray, fwhm: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """The unit-area pseudo-Voigt density (per degree)."""
    u = (x - centre) / fwhm
    lorentz = 2 / (np.pi * fwhm) / (1 + 4 * u ** 2)
    gauss = 2 * np.sqrt(np.log(2) / np.pi) / fwhm * np.exp(-4 * np.log(2) * u ** 2)
    return eta * lorentz + (1 - eta) * gauss


def ring_profile(pixels: PixelGeometry, two_theta: np.ndarray, intensity: np.ndarray, fwhm: np.ndarray,
                 eta: np.ndarray, step: float | None = None) -> np.ndarray:
    """Σ_k I_k · (profile k averaged over each pixel's 2θ span), per degree.

    The cumulative Σ_k I_k Φ_k is tabulated on a 1D 2θ grid (``step``: a tenth of the narrowest FWHM,
    at most 0.01°) and interpolated at each pixel's two corner extremes, so the cost is one pass over the
    pixels whatever the number of reflections.
    """
    keep = np.isfinite(two_theta) & (intensity > 0)
    two_theta, intensity, fwhm, eta = two_theta[keep], intensity[keep], fwhm[keep], eta[keep]
    lo, hi = float(pixels.two_theta_min.min()), float(pixels.two_theta_max.max())
    if len(two_theta) == 0:
        return np.zeros_like(pixels.two_theta)
    step = step or min(0.01, float(fwhm.min()) / 10)
    grid = np.arange(lo - step, hi + 2 * step, step)
    cumulative = np.zeros_like(grid)
    for start in range(0, len(two_theta), 16):  # blocks of reflections bound the (grid x reflections) memory
        s = slice(start, start + 16)
        cumulative += (intensity[s] * pseudo_voigt_cdf(grid[:, None], two_theta[s], fwhm[s], eta[s])).sum(1)
    width = pixels.two_theta_max - pixels.two_theta_min
    return (np.interp(pixels.two_theta_max, grid, cumulative) - np.interp(pixels.two_theta_min, grid, cumulative)) / width


def spot_field(pixels: PixelGeometry, rng: np.random.Generator, contrast: float, two_theta_corr: float = 0.3,
               chi_corr: float = 1.0) -> np.ndarray:
    """Spotty-ring texture: a log-normal random field over (2θ, χ), mean 1, per pixel.

    A few large crystallites put their intensity into spots along each ring; the field is correlated over
    ``chi_corr`` degrees along a ring (spot size) and ``two_theta_corr`` degrees across it (so a spot covers the
    ring's width while rings further apart get independent spots). ``contrast`` is the log-normal σ (0: smooth).
    """
    if contrast <= 0:
        return np.ones_like(pixels.two_theta)
    from scipy.ndimage import gaussian_filter, map_coordinates

    d_tth, d_chi = two_theta_corr / 3, chi_corr / 3
    t0, c0 = pixels.two_theta_min.min() - 1, pixels.chi.min() - 1
    n_t = int((pixels.two_theta_max.max() + 1 - t0) / d_tth) + 2
    n_c = int((pixels.chi.max() + 1 - c0) / d_chi) + 2
    noise = gaussian_filter(rng.standard_normal((n_t, n_c)), sigma=(3, 3), mode="wrap")
    noise /= noise.std()
    coords = np.stack([(pixels.two_theta - t0) / d_tth, (pixels.chi - c0) / d_chi])
    g = map_coordinates(noise, coords.reshape(2, -1), order=1, mode="nearest").reshape(pixels.two_theta.shape)
    return np.exp(contrast * g - contrast ** 2 / 2)


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, correlation: float) -> np.ndarray:
    """A smooth Gaussian random field over the detector, unit standard deviation; ``correlation`` is a
    fraction of the frame side (so the field is the same physical pattern at any frame size)."""
    from scipy.ndimage import gaussian_filter, zoom

    coarse = 64  # draw on a fixed coarse grid and upsample: independent of the frame size, and cheap
    g = gaussian_filter(rng.standard_normal((coarse, coarse)), sigma=correlation * coarse, mode="reflect")
    g = zoom(g, (shape[0] / coarse, shape[1] / coarse), order=1, mode="nearest", grid_mode=True)
    return (g - g.mean()) / g.std()


def amorphous_hump(two_theta: np.ndarray, wavelength: float, q_centre: float, q_fwhm: float) -> np.ndarray:
    """An amorphous (glass substrate) scattering hump, peak 1, centred at momentum transfer Q (Å⁻¹)."""
    q = 4 * np.pi * np.sin(np.deg2rad(two_theta) / 2) / wavelength
    return np.exp(-4 * np.log(2) * ((q - q_centre) / q_fwhm) ** 2)


def radial_background(pixels: PixelGeometry, wavelength: float, level: float) -> np.ndarray:
    """Counts per steradian of a laboratory instrument's background: a function of 2θ alone (air scatter
    falling with angle plus a weak glass-substrate hump), the same for every sample."""
    tth = pixels.two_theta
    return level * (1 + 1.5 * np.exp(-(tth - 10) / 12) + 0.6 * amorphous_hump(tth, wavelength, 1.55, 0.9))


def irregular_background(pixels: PixelGeometry, wavelength: float, level: float, zinc: float,
                         rng: np.random.Generator) -> np.ndarray:
    """Counts per steradian of a synchrotron background that changes from sample to sample and over the
    detector: air scatter and the glass substrate's amorphous humps with per-sample amplitudes, Zn K
    fluorescence (12.7 keV lies above the Zn K edge at 9.66 keV; isotropic, proportional to the Zn
    fraction), all modulated by a smooth random field (scatter from slits and fixtures, beam footprint)
    and a random gradient across the frame."""
    tth, shape = pixels.two_theta, pixels.two_theta.shape
    air = rng.uniform(0.5, 1.5) * np.exp(-(tth - 5) / 15)
    glass = rng.uniform(0.5, 2.0) * amorphous_hump(tth, wavelength, 1.55, 0.9) \
        + rng.uniform(0.2, 0.8) * amorphous_hump(tth, wavelength, 3.0, 1.2)
    fluorescence = rng.uniform(0.8, 1.2) * 1.5 * zinc
    rows, cols = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 1 + rng.uniform(0.1, 0.4) * (np.cos(angle) * rows + np.sin(angle) * cols)
    modulation = np.clip(1 + rng.uniform(0.2, 0.5) * smooth_field(shape, rng, rng.uniform(0.08, 0.2)), 0.2, None)
    return level * (air + glass + fluorescence) * gradient * modulation


def poisson_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counting noise: Poisson counts of the expected photons per pixel, as uint32."""
    if not np.isfinite(expected).all() or (expected < 0).any():
        raise ValueError("expected counts must be finite and non-negative")
    return rng.poisson(expected).astype(np.uint32)
