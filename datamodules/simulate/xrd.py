"""Simulated 2D diffraction frames of a Sn–Ti–Zn–O composition-spread library (diss. ch. 7).

The paper's 177 SLAC and NIST frames are not public. This writes a stand-in once per parameter
set, from physics in :mod:`materials`: compositions and phase regions
(:mod:`materials.composition_spread`), phase structures and powder peaks (pymatgen,
:mod:`materials.xrd_phases`), detector geometry (pyFAI, :mod:`materials.xrd_geometry`) and rings,
texture, background and Poisson noise (:mod:`materials.xrd_rings`).

Per sample and phase present, drawn from the sample's own seed: crystallite size (log-uniform,
Scherrer broadening), isotropic lattice strain (shifts every peak by Bragg's law), March–Dollase
preferred orientation along the phase's usual film texture, and a spotty-ring contrast that
grows with crystallite size; per sample, a film-thickness factor and (SLAC) its own background.

One HDF5 file per parameter set, ``<data>/xrd/<preset>-<size>px-n<n>-<hash>.h5``: ``frames``
(n, n_frames, size, size) uint32 counts, chunked per frame, gzip + shuffle, Fletcher-32
checksummed; ``composition`` (n, 3: Sn, Ti, Zn cation fractions), ``label`` (n,), and the drawn
parameters per sample and phase. Sample ``i`` is drawn from seed (seed, i), so an interrupted
generation resumes after the last finished batch and gives the same file; a complete file is
verified chunk by chunk once and regenerated if a checksum fails.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from datamodules.simulate.h5cache import open_spec_file, require_done
from materials.composition_spread import (PAPER_COUNTS, PHASE_REGIONS, assign_regions, class_counts,
                                          phase_fractions, wafer_compositions, wafer_positions)
from materials.xrd_geometry import caglioti_fwhm, pixel_geometry, preset, scherrer_fwhm
from materials.xrd_phases import PHASES, powder_peaks
from materials.xrd_rings import (irregular_background, poisson_counts, radial_background, ring_profile, spot_field,
                                 tch_pseudo_voigt)

SIMULATOR_VERSION = 1
PHASE_NAMES = tuple(PHASES)
CLASS_NAMES = tuple(r.name for r in PHASE_REGIONS)


@dataclass(frozen=True)
class XRDDatasetSpec:
    """Everything that decides the content of a simulated library (and so its cache name).

    ``peak_counts`` and ``background_counts`` are counts per native (2048²) pixel: the top of the
    strongest ring of a pure phase and the mean background level; a smaller frame bins pixels, so its
    pixels hold proportionally more counts.
    """

    preset: str = "SLAC"
    n_samples: int = 177
    frame_size: int = 256
    seed: int = 0
    counts: tuple[int, ...] = PAPER_COUNTS
    boundary_perturbation: float = 0.02
    minor_phase_floor: float = 0.15
    crystallite_size: tuple[float, float] = (10.0, 60.0)  # nm
    strain: float = 0.002
    march_dollase: tuple[float, float] = (0.7, 1.0)  # r range; (1, 1) = no preferred orientation
    spottiness: float = 1.0  # largest log-normal contrast of spotty rings; 0 = smooth rings
    peak_counts: float | None = None  # None: the preset's (SLAC 1500, NIST 60)
    background_counts: float | None = None  # None: the preset's (SLAC 1500, irregular; NIST 4, radial)
    batch: int = field(default=16, compare=False)  # samples per write: speed only, not content

    def __post_init__(self):
        preset(self.preset)
        class_counts(self.n_samples, self.counts)  # validates the sample count
        if self.frame_size < 16:
            raise ValueError(f"frame_size must be at least 16, got {self.frame_size}")
        if not 0 <= self.minor_phase_floor < 0.5:
            raise ValueError(f"minor_phase_floor must be in [0, 0.5), got {self.minor_phase_floor}")

    @property
    def levels(self) -> tuple[float, float]:
        default = {"SLAC": (1500.0, 1500.0), "NIST": (60.0, 4.0)}[self.preset]
        return (self.peak_counts or default[0], default[1] if self.background_counts is None else self.background_counts)

    def content(self) -> dict:
        d = asdict(self)
        d.pop("batch")
        d["counts"] = list(self.counts)
        d["crystallite_size"], d["march_dollase"] = list(self.crystallite_size), list(self.march_dollase)
        return {"simulator_version": SIMULATOR_VERSION, **d}

    def cache_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.preset.lower()}-{self.frame_size}px-n{self.n_samples}-{digest}.h5"


def library(spec: XRDDatasetSpec) -> dict[str, np.ndarray]:
    """Compositions, phase-region labels and phase volume fractions of the whole library."""
    rng = np.random.default_rng([spec.seed, 1_000_003])
    composition = wafer_compositions(wafer_positions(spec.n_samples))
    labels = assign_regions(composition, class_counts(spec.n_samples, spec.counts), rng, spec.boundary_perturbation)
    inst = preset(spec.preset)
    cation_volume = {}
    for name in PHASE_NAMES:
        p = powder_peaks(name, inst.wavelength, (5.0, 90.0))
        cation_volume[name] = p.cell_volume / p.cations_per_cell
    fractions = phase_fractions(composition, labels, PHASE_NAMES, cation_volume, spec.minor_phase_floor)
    return {"composition": composition, "label": labels, "phase_fraction": fractions}


def _intensity_scale(wavelength: float) -> float:
    """1 / the largest I/V² of any phase's reflection between 5° and 90° 2θ (one scale for every frame)."""
    return 1.0 / max(float((p.intensity / p.cell_volume ** 2).max())
                     for p in (powder_peaks(name, wavelength, (5.0, 90.0)) for name in PHASE_NAMES))


def render_sample(spec: XRDDatasetSpec, index: int, composition: np.ndarray, fractions: np.ndarray
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The (n_frames, size, size) Poisson counts of sample ``index`` and the parameters drawn for it."""
    inst, size = preset(spec.preset), spec.frame_size
    rng = np.random.default_rng([spec.seed, index])
    n_phases = len(PHASE_NAMES)
    params = {k: np.full(n_phases, np.nan) for k in ("crystallite_size", "strain", "march_dollase", "spottiness")}
    present = np.flatnonzero(fractions > 0)
    lo, hi = np.log(spec.crystallite_size)
    params["crystallite_size"][present] = np.exp(rng.uniform(lo, hi, len(present)))
    params["strain"][present] = rng.normal(0, spec.strain, len(present))
    params["march_dollase"][present] = rng.uniform(*spec.march_dollase, len(present))
    params["spottiness"][present] = spec.spottiness * rng.uniform(0, 1, len(present)) * np.sqrt(
        params["crystallite_size"][present] / spec.crystallite_size[1])
    thickness = rng.uniform(0.7, 1.3)
    scale = _intensity_scale(inst.wavelength)
    peak_level, background_level = spec.levels
    frames = []
    for frame in inst.frames:
        pixels = pixel_geometry(frame, size)
        native = (frame.side / 2048 / frame.distance) ** 2  # solid angle of a native pixel at the PONI
        span = (max(0.5, float(pixels.two_theta_min.min()) - 3), float(pixels.two_theta_max.max()) + 3)
        rings = np.zeros_like(pixels.two_theta)
        for k in present:
            peaks = powder_peaks(PHASE_NAMES[k], inst.wavelength, span)
            if len(peaks.d) == 0:
                continue
            tth, intensity = peaks.strained(params["strain"][k])
            intensity = intensity / peaks.cell_volume ** 2 * scale * fractions[k] * peaks.march_dollase(
                params["march_dollase"][k])
            fwhm, eta = tch_pseudo_voigt(caglioti_fwhm(tth, inst.caglioti),
                                         scherrer_fwhm(tth, params["crystallite_size"][k], inst.wavelength))
            rings += ring_profile(pixels, tth, intensity, fwhm, eta) * spot_field(pixels, rng, params["spottiness"][k])
        cone = 2 * np.pi * np.sin(np.deg2rad(pixels.two_theta))
        # ~ peak counts at the top of a 0.3 deg wide ring near 30 deg (profile peak 3/deg, cone 3.1)
        expected = peak_level * thickness * rings * pixels.polarization / cone * pixels.solid_angle / native
        if inst.background == "irregular":
            back = irregular_background(pixels, inst.wavelength, background_level, float(composition[2]), rng)
        else:
            back = radial_background(pixels, inst.wavelength, background_level)
        frames.append(poisson_counts(expected + back * pixels.solid_angle / native, rng))
    params["thickness"] = np.array(thickness)
    return np.stack(frames), params


def _create(path: Path, spec: XRDDatasetSpec):
    import h5py

    inst, lib = preset(spec.preset), library(spec)
    n, s, f = spec.n_samples, spec.frame_size, len(inst.frames)
    with h5py.File(path, "w") as h:
        h.attrs["spec"] = json.dumps(spec.content(), sort_keys=True)
        h.attrs["class_names"] = json.dumps(CLASS_NAMES)
        h.attrs["phase_names"] = json.dumps(PHASE_NAMES)
        h.attrs["instrument"] = json.dumps(inst.describe())
        h.attrs["n_done"] = 0
        h.create_dataset("frames", (n, f, s, s), dtype="u4", chunks=(1, 1, s, s), compression="gzip",
                         compression_opts=4, shuffle=True, fletcher32=True)
        for name, value in lib.items():
            h.create_dataset(name, data=value, fletcher32=True)
        for name in ("crystallite_size", "strain", "march_dollase", "spottiness"):
            h.create_dataset(name, (n, len(PHASE_NAMES)), dtype="f8", fletcher32=True)
        h.create_dataset("thickness", (n,), dtype="f8", fletcher32=True)


def open_checked(path: Path, spec: XRDDatasetSpec, complete: bool = True):
    """The dataset file, after checking it holds ``spec`` (and, with ``complete``, every sample)."""
    h = open_spec_file(path, spec.content(), "cached XRD library")
    if complete:
        require_done(h, path, int(h.attrs["n_done"]), spec.n_samples, "samples")
    return h


def verify(path: Path) -> bool:
    """True when every chunk of every dataset reads back with a valid Fletcher-32 checksum."""
    import h5py

    try:
        with h5py.File(path, "r") as h:
            for name in h:
                data = h[name]
                for i in range(0, len(data), 8):
                    data[i:i + 8]
    except OSError:
        return False
    return True


def generate(spec: XRDDatasetSpec, root: Path, progress: bool = True) -> Path:
    """Generate (or finish, or repair) the library of ``spec`` under ``root``; return its path."""
    import h5py
    from tqdm.auto import tqdm

    root.mkdir(parents=True, exist_ok=True)
    path = root / spec.cache_name()
    if path.exists() and not verify(path):
        warnings.warn(f"{path}: a checksum failed on read; regenerating it", stacklevel=2)
        path.unlink()
    if not path.exists():
        _create(path, spec)
    with open_checked(path, spec, complete=False) as h:
        start = int(h.attrs["n_done"])
        composition, fractions = h["composition"][:], h["phase_fraction"][:]
    if start < spec.n_samples:
        began = time.perf_counter()
        bar = tqdm(total=spec.n_samples, initial=start, unit="sample", disable=not progress,
                   desc=f"simulating {spec.preset} frames {spec.frame_size}^2")
        for first in range(start, spec.n_samples, spec.batch):
            rows = range(first, min(first + spec.batch, spec.n_samples))
            rendered = [render_sample(spec, i, composition[i], fractions[i]) for i in rows]
            with h5py.File(path, "r+") as h:
                h["frames"][rows.start:rows.stop] = np.stack([r[0] for r in rendered])
                for name in ("crystallite_size", "strain", "march_dollase", "spottiness", "thickness"):
                    h[name][rows.start:rows.stop] = np.stack([r[1][name] for r in rendered])
                h.attrs["n_done"] = rows.stop
            bar.update(rows.stop - bar.n)
            bar.set_postfix(samples_per_s=f"{(bar.n - start) / (time.perf_counter() - began):.3g}")
        bar.close()
        if not verify(path):
            raise OSError(f"{path}: written but a checksum fails on read (disk problem?)")
    return path
