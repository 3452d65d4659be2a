"""EBSD patterns as a camera records them, and as OMNet and dictionary indexing read them.

- :class:`PatternNoise`: the measurement of an ideal simulated pattern (kikuchipy's projection of the master
  pattern, 8-bit): a smooth backscatter background added to the Kikuchi signal, the scintillator's point
  spread (Gaussian blur), Poisson counting statistics, Gaussian read noise, and an 8-bit camera whose
  exposure puts each pattern's brightest pixel at 255.
- :func:`process_patterns`: what every pattern goes through before matching or learning, simulated or real:
  the static background subtracted when one is known, the dynamic background (a Gaussian blur of the pattern
  itself, σ = width/8, as kikuchipy's ``remove_dynamic_background``) subtracted, then each pattern rescaled to
  [0, 1] (the dissertation rescales pixel values [0, 255] to [0, 1]).
- :func:`check_patterns`: the shape, dtype and finiteness a pattern array must have; the error names the
  first bad pattern and pixel.
- :data:`NOISE_SWEEP`: named measurement conditions a net trained on the default noise never sees (electron
  counts over two orders of magnitude, backgrounds of other shapes and strengths, blur, read noise, small
  projection-centre errors), versioned by :data:`NOISE_SWEEP_VERSION`: the test sets of robustness.

PyTorch, vectorised over whole stacks of patterns, on any device: the same code makes the cached test sets
and the on-the-fly training noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch


def blur_matrix(n: int, sigma: float, truncate: float = 4.0, dtype=torch.float64, device=None) -> torch.Tensor:
    """(n, n) matrix B with (B @ x) = the 1-D Gaussian filter of x with its edge values extended."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    rows = torch.arange(n)[:, None].expand(n, len(offsets))
    cols = (rows + offsets.long()[None, :]).clamp(0, n - 1)
    matrix = torch.zeros(n, n, dtype=torch.float64).index_put_((rows, cols), weights.expand(n, -1), accumulate=True)
    return matrix.to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur of (n, H, W) images, edges extended (``scipy.ndimage.gaussian_filter`` with
    ``mode="nearest"``), as two small matrix products (fast on CPU and GPU)."""
    rows = blur_matrix(x.shape[-2], sigma, truncate, x.dtype, x.device)
    cols = blur_matrix(x.shape[-1], sigma, truncate, x.dtype, x.device)
    return rows @ x @ cols.T


@dataclass(frozen=True)
class PatternNoise:
    """How a simulated pattern is measured (Poisson counts, read noise, background, blur).

    Args:
        counts: mean electron counts per pixel of the Kikuchi signal (Poisson statistics; lower is noisier).
        background: mean of the smooth backscatter background relative to the mean Kikuchi signal.
        background_width: σ of the background's Gaussian profile as a fraction of the detector width; its
            peak sits at (0.45 H, PCx W) on a floor of 0.25 of the peak, shaped after the static background of
            kikuchipy's real Ni patterns (peak near row 26, column 25 of 60; half height ~20 px away).
        blur: σ in pixels of the scintillator's point spread function (0 = none).
        read_noise: σ of the Gaussian camera read noise, in counts.
        background_shape: ``gaussian`` (above) or ``ramp``: a linear gradient from the top row (0.25 of the
            bottom row's yield) to the bottom row, as a detector tilted towards the beam sees; mean 1 either way.
    """

    counts: float = 30.0
    background: float = 2.0
    background_width: float = 0.35
    blur: float = 0.7
    read_noise: float = 3.0
    background_shape: Literal["gaussian", "ramp"] = "gaussian"

    def __post_init__(self):
        for name in ("counts", "background_width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"noise {name} must be > 0, got {getattr(self, name)}")
        for name in ("background", "blur", "read_noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"noise {name} must be >= 0, got {getattr(self, name)}")
        if self.background_shape not in ("gaussian", "ramp"):
            raise ValueError(f"noise background_shape must be 'gaussian' or 'ramp', got {self.background_shape!r}")

    def content(self) -> dict:
        """The parameters that decide a measured pattern (a cache's name); the background shape only when it is
        not the original Gaussian, so the caches made before it existed keep their names."""
        content = asdict(self)
        if content["background_shape"] == "gaussian":
            del content["background_shape"]
        return content

    def background_profile(self, shape: tuple[int, int], pcx: float, device=None) -> torch.Tensor:
        """The smooth backscatter yield over the detector, mean 1 (float64)."""
        h, w = shape
        rows = torch.arange(h, device=device, dtype=torch.float64)[:, None]
        cols = torch.arange(w, device=device, dtype=torch.float64)[None, :]
        if self.background_shape == "ramp":
            profile = (0.25 + 0.75 * rows / max(h - 1, 1)).expand(h, w)
        else:
            r2 = (rows - 0.45 * h) ** 2 + (cols - pcx * w) ** 2
            profile = 0.25 + 0.75 * torch.exp(-r2 / (2 * (self.background_width * w) ** 2))
        return profile / profile.mean()

    def measure(self, ideal: torch.Tensor, pcx: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ideal patterns (n, H, W), non-negative → recorded 8-bit frames (n, H, W) uint8, on ideal's device."""
        ideal = torch.as_tensor(ideal).double()
        signal = ideal / ideal.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        expected = self.counts * (signal + self.background * self.background_profile(ideal.shape[-2:], pcx,
                                                                                      ideal.device))
        if self.blur > 0:
            expected = gaussian_blur(expected, self.blur)
        recorded = torch.poisson(expected, generator=generator)
        if self.read_noise > 0:
            recorded = recorded + self.read_noise * torch.randn(recorded.shape, generator=generator,
                                                                dtype=recorded.dtype, device=recorded.device)
        recorded = recorded.clamp_min(0)
        exposure = 255 / recorded.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        return torch.round(recorded * exposure).to(torch.uint8)


def check_patterns(patterns, shape: tuple[int, int] | None = None, name: str = "patterns"):
    """``patterns`` (NumPy or torch) as (n, H, W) real numbers; a clear error for a wrong size or dtype or a NaN."""
    if patterns.ndim == 2:
        patterns = patterns[None]
    if patterns.ndim != 3:
        raise ValueError(f"{name}: expected (n, H, W) patterns, got an array of shape {tuple(patterns.shape)}")
    if shape is not None and tuple(patterns.shape[1:]) != tuple(shape):
        raise ValueError(f"{name}: patterns are {patterns.shape[1]}x{patterns.shape[2]} pixels, the detector of "
                         f"the dictionary is {shape[0]}x{shape[1]}")
    t = torch.as_tensor(patterns) if not isinstance(patterns, np.ndarray) or patterns.dtype.kind in "biuf" else None
    if t is None or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: pattern intensities must be integers or floats, got dtype {patterns.dtype}")
    if t.is_floating_point():
        bad = ~torch.isfinite(t)
        if bad.any():
            i, r, c = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"{name}: pattern {i} has a non-finite pixel ({float(t[i, r, c])}) at row {r}, "
                             f"column {c} ({int(bad.any(dim=2).any(dim=1).sum())} patterns affected)")
    return patterns


def rescale_unit(x: torch.Tensor) -> torch.Tensor:
    """Each (H, W) pattern linearly onto [0, 1] (a flat pattern becomes 0)."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    span = x.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(x))


def process_patterns(patterns, static_background=None, dynamic_sigma: float | None = None) -> torch.Tensor:
    """Background-corrected patterns in [0, 1], float32 (n, H, W), on the input's device.

    ``static_background`` (H, W) is subtracted first (a real detector's); the dynamic background, a Gaussian
    blur of each pattern with σ = ``dynamic_sigma`` pixels (default width / 8), next (0 skips it).
    """
    x = torch.as_tensor(check_patterns(patterns)).float()
    sigma = x.shape[-1] / 8 if dynamic_sigma is None else dynamic_sigma
    if static_background is not None:
        x = x - torch.as_tensor(static_background, dtype=torch.float32, device=x.device)
    if sigma > 0:
        x = x - gaussian_blur(x, sigma)
    return rescale_unit(x)


def to_uint8(unit: torch.Tensor) -> torch.Tensor:
    """[0, 1] patterns stored as 8-bit (what the datamodules keep in memory)."""
    return torch.round(unit.clamp(0, 1) * 255).to(torch.uint8)


@dataclass(frozen=True)
class NoiseRanges:
    """Where randomised training measurements are drawn from (:meth:`draw`: one :class:`PatternNoise` each).

    Electron counts log-uniform, the other parameters uniform, a ramp background with probability
    ``ramp_share``; the defaults reach past the noise sweep's conditions on every side rather than matching
    them (counts 3-300 there, 2-500 here; backgrounds to 6 there, to 8 here; blur to 2 px there, 2.5 here).

    ``patterns_per_draw`` patterns of a training batch share a draw (None: the whole batch). One draw per 8
    patterns kept OMNet at chance (40°) for 24 epochs, until early stopping, where one per batch left chance after
    5 (docs/results/ebsd.md)."""

    counts: tuple[float, float] = (2.0, 500.0)
    background: tuple[float, float] = (0.5, 8.0)
    background_width: tuple[float, float] = (0.1, 0.6)
    ramp_share: float = 0.3
    blur: tuple[float, float] = (0.0, 2.5)
    read_noise: tuple[float, float] = (0.0, 20.0)
    patterns_per_draw: int | None = None

    def __post_init__(self):
        if self.patterns_per_draw is not None and self.patterns_per_draw < 1:
            raise ValueError(f"patterns_per_draw must be at least 1, got {self.patterns_per_draw}")
        for name in ("counts", "background", "background_width", "blur", "read_noise"):
            low, high = getattr(self, name)
            if not 0 <= low <= high or (name in ("counts", "background_width") and low <= 0):
                raise ValueError(f"noise range {name} must be 0 <= low <= high (counts, width: low > 0), "
                                 f"got {(low, high)}")
        if not 0 <= self.ramp_share <= 1:
            raise ValueError(f"ramp_share must lie in [0, 1], got {self.ramp_share}")

    def draw(self, generator: torch.Generator | None = None) -> PatternNoise:
        u = torch.rand(6, generator=generator, dtype=torch.float64).tolist()

        def uniform(bounds, x):
            return bounds[0] + (bounds[1] - bounds[0]) * x

        log_counts = uniform((np.log(self.counts[0]), np.log(self.counts[1])), u[0])
        return PatternNoise(counts=float(np.exp(log_counts)), background=uniform(self.background, u[1]),
                            background_width=uniform(self.background_width, u[2]),
                            background_shape="ramp" if u[3] < self.ramp_share else "gaussian",
                            blur=uniform(self.blur, u[4]), read_noise=uniform(self.read_noise, u[5]))


@dataclass(frozen=True)
class MeasurementCondition:
    """How a test set is recorded: its noise, and the error of the projection centre the dictionary assumes
    (Bruker fractions added to the true PC: the patterns are simulated at PC + ``pc_error``)."""

    noise: PatternNoise = PatternNoise()
    pc_error: tuple[float, float, float] = (0.0, 0.0, 0.0)


#: bump when a condition of :data:`NOISE_SWEEP` changes (it names the sweep's cache)
NOISE_SWEEP_VERSION = 1
#: the robustness test conditions, each one or two steps away from the training noise (counts 30, Gaussian background 2,
#: blur 0.7 px, read noise 3): the training's own condition first, as the reference
NOISE_SWEEP: dict[str, MeasurementCondition] = {
    "as-trained": MeasurementCondition(),
    "counts-3": MeasurementCondition(PatternNoise(counts=3.0)),
    "counts-10": MeasurementCondition(PatternNoise(counts=10.0)),
    "counts-300": MeasurementCondition(PatternNoise(counts=300.0)),
    "background-6": MeasurementCondition(PatternNoise(background=6.0)),
    "background-ramp": MeasurementCondition(PatternNoise(background=3.0, background_shape="ramp")),
    "background-narrow": MeasurementCondition(PatternNoise(background=3.0, background_width=0.15)),
    "blur-2": MeasurementCondition(PatternNoise(blur=2.0)),
    "read-noise-15": MeasurementCondition(PatternNoise(read_noise=15.0)),
    "low-counts-ramp": MeasurementCondition(PatternNoise(counts=10.0, background=3.0, background_shape="ramp",
                                                         read_noise=5.0)),
    "pc-error-0.01": MeasurementCondition(pc_error=(0.01, -0.01, 0.01)),
}
