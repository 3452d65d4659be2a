"""Area-detector geometry of the two instruments of diss. 7.3.2, on pyFAI.

- ``SLAC``: one frame, 2θ 5.365–58.566° over the frame (SSRL beamline 1-5 style: 12.7 keV,
  λ = 0.9762 Å, a 2048² detector of 79.1 µm pixels 173.2 mm from the sample, tilted by 30.43° in
  the vertical scattering plane, which the horizontally polarised beam leaves unattenuated;
  distance and tilt solved so the frame's pixel corners span exactly the paper's range).
- ``NIST``: two frames centred at 2θ = 25° and 45°, spanning 10–40° and 30–60° along the
  central row (a laboratory diffractometer with Cu Kα1, λ = 1.5406 Å, unpolarised, and a 2048²
  area detector of 68 µm pixels at 259.9 mm = (detector half-width) / tan 15°).

The detector side is fixed in millimetres, so a smaller frame (``size`` < 2048) is the same
detector with binned pixels: the same 2θ range, more counts per pixel. Every per-pixel
quantity comes from pyFAI's ``AzimuthalIntegrator`` (centre and corner 2θ, χ, solid angle,
polarisation); :func:`integrate_1d` is pyFAI's ``integrate1d`` (the 1D baseline's input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class FrameGeometry:
    """One detector position; the point of normal incidence (PONI) is the detector centre."""

    distance: float  # m
    tilt: float  # degrees, detector rotation towards higher 2θ
    axis: str  # "vertical": 2θ grows down the rows (pyFAI rot2 < 0); "horizontal": along the columns (rot1 > 0)
    side: float  # m, detector side (square)
    wavelength: float  # Å
    polarization: float  # pyFAI polarisation factor (0 unpolarised, 1 fully horizontal)
    nominal_range: tuple[float, float]  # degrees

    def integrator(self, size: int):
        """pyFAI's AzimuthalIntegrator of this frame read out as ``size`` × ``size`` pixels."""
        from pyFAI.detectors import Detector
        from pyFAI.integrator.azimuthal import AzimuthalIntegrator

        if size < 8:
            raise ValueError(f"frame size must be at least 8 pixels, got {size}")
        pixel = self.side / size
        rot = np.deg2rad(self.tilt)
        rots = {"rot1": rot, "rot2": 0.0} if self.axis == "horizontal" else {"rot1": 0.0, "rot2": -rot}
        return AzimuthalIntegrator(dist=self.distance, poni1=self.side / 2, poni2=self.side / 2, rot3=0.0,
                                   detector=Detector(pixel1=pixel, pixel2=pixel, max_shape=(size, size)),
                                   wavelength=self.wavelength * 1e-10, **rots)


@dataclass(frozen=True)
class InstrumentPreset:
    name: str
    frames: tuple[FrameGeometry, ...]
    caglioti: tuple[float, float, float]  # instrumental Gaussian FWHM² = U tan²θ + V tanθ + W (deg²) at 2048²
    background: str  # "irregular" (per sample, over the detector) or "radial" (a function of 2θ only)
    n_points_1d: int  # 1D pattern length of the paper's baseline (931 for SLAC, 2501 for NIST)

    @property
    def wavelength(self) -> float:
        return self.frames[0].wavelength

    def describe(self) -> dict:
        return asdict(self)


_SLAC_SIDE, _NIST_SIDE = 2048 * 79.1e-6, 2048 * 68e-6
PRESETS: dict[str, InstrumentPreset] = {
    "SLAC": InstrumentPreset("SLAC", (FrameGeometry(0.17316562, 30.43289131, "vertical", _SLAC_SIDE, 0.9762, 0.95,
                                                    (5.365, 58.566)),),
                             (0.004, 0.0, 0.006), "irregular", 931),
    "NIST": InstrumentPreset("NIST", tuple(FrameGeometry(_NIST_SIDE / 2 / np.tan(np.deg2rad(15)), centre, "horizontal",
                                                         _NIST_SIDE, 1.5406, 0.0, (centre - 15.0, centre + 15.0))
                                           for centre in (25.0, 45.0)),
                             (0.01, 0.0, 0.012), "radial", 2501),
}


def preset(name: str) -> InstrumentPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown instrument preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class PixelGeometry:
    """Per-pixel arrays of one frame (rows = pyFAI dim1, columns = dim2); angles in degrees."""

    two_theta: np.ndarray
    two_theta_min: np.ndarray  # over the pixel's four corners
    two_theta_max: np.ndarray
    chi: np.ndarray
    solid_angle: np.ndarray  # steradian
    polarization: np.ndarray  # this beam's polarisation factor over the unpolarised (1 + cos²2θ) / 2


@lru_cache(maxsize=8)
def pixel_geometry(frame: FrameGeometry, size: int) -> PixelGeometry:
    ai = frame.integrator(size)
    shape = (size, size)
    tth = ai.center_array(shape, unit="2th_deg")
    corners = ai.corner_array(shape, unit="2th_deg")[..., 0].astype(np.float64)
    chi = ai.center_array(shape, unit="chi_deg")
    pixel = frame.side / size
    solid = ai.solidAngleArray(shape).astype(np.float64) * pixel * pixel / frame.distance ** 2
    unpolarised = (1 + np.cos(np.deg2rad(tth)) ** 2) / 2
    pol = ai.polarization(shape, factor=frame.polarization).astype(np.float64) / unpolarised
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in
              (tth, corners.min(-1), corners.max(-1), chi, solid, pol)]
    for a in arrays:
        a.flags.writeable = False
    return PixelGeometry(*arrays)


def caglioti_fwhm(two_theta: np.ndarray, caglioti: tuple[float, float, float]) -> np.ndarray:
    """Instrumental Gaussian FWHM (degrees) from Caglioti's U, V, W."""
    u, v, w = caglioti
    t = np.tan(np.deg2rad(np.asarray(two_theta) / 2))
    return np.sqrt(np.maximum(u * t ** 2 + v * t + w, 1e-8))


def scherrer_fwhm(two_theta: np.ndarray, size_nm: float | np.ndarray, wavelength: float, k: float = 0.9) -> np.ndarray:
    """Size broadening (Lorentzian FWHM, degrees): β = K λ / (L cos θ)."""
    theta = np.deg2rad(np.asarray(two_theta) / 2)
    return np.rad2deg(k * wavelength / (np.asarray(size_nm) * 10 * np.cos(theta)))


def powder_patterns(frames: np.ndarray, instrument: InstrumentPreset) -> tuple[np.ndarray, np.ndarray]:
    """The 1D intensity–2θ patterns of (n, n_frames, H, W) frames: (2θ, (n, n_points_1d)).

    SLAC: its one frame over 5.365–58.566° in 931 bins. NIST: both frames integrated onto one grid of
    10–60° in 2501 bins (0.02°), averaged where they overlap (7.4.4: "we combined them").
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] != len(instrument.frames):
        raise ValueError(f"{instrument.name} frames must be (n, {len(instrument.frames)}, H, W), got {frames.shape}")
    lo = min(f.nominal_range[0] for f in instrument.frames)
    hi = max(f.nominal_range[1] for f in instrument.frames)
    total, cover = 0.0, 0.0
    for k, frame in enumerate(instrument.frames):
        tth, pattern = integrate_1d(frames[:, k], frame, instrument.n_points_1d, (lo, hi))
        pixels = pixel_geometry(frame, frames.shape[-1])
        inside = ((tth >= pixels.two_theta_min.min()) & (tth <= pixels.two_theta_max.max())).astype(float)
        total, cover = total + pattern * inside, cover + inside
    return tth, total / np.maximum(cover, 1)


def integrate_1d(frames: np.ndarray, frame: FrameGeometry, n_points: int,
                 two_theta_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """pyFAI ``integrate1d`` of each (H, W) frame of ``frames`` (n, H, W): (2θ in degrees, (n, n_points) intensity).

    Intensities are per pixel averaged over each 2θ bin (no solid-angle or polarisation correction: the
    raw counts, as the integrated patterns the baseline sees); bins the frame does not reach are 0.
    """
    frames = np.asarray(frames)
    ai = frame.integrator(frames.shape[-1])
    rng = two_theta_range or frame.nominal_range
    out = np.empty((len(frames), n_points))
    radial = None
    for i, img in enumerate(frames):  # pyFAI integrates one image per call; its lookup table is built once
        res = ai.integrate1d(img.astype(np.float32), n_points, unit="2th_deg", radial_range=rng,
                             correctSolidAngle=False, method=("bbox", "csr", "cython"))
        radial, out[i] = res.radial, np.nan_to_num(res.intensity)
    return radial, out
