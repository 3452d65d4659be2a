"""Ni EBSD patterns → crystal orientations (OMNet, dissertation ch. 6).

``prepare_data`` simulates the pattern sets once (:mod:`datamodules.simulate.ebsd`); ``setup`` only reads the
verified cache and prepares what the net sees (:func:`materials.ebsd_patterns.process_patterns`, kept as 8-bit):

- ``train``: the dictionary (cubochoric sampling of the fundamental zone), as the paper trains on it whole, or
  with ``train_orientations`` that many noise-free patterns at random orientations (the dictionary then serves
  only dictionary indexing); with ``train_noise`` each batch is measured afresh with the test sets' noise model
  (augmentation), or with ``train_noise: randomized`` with a noise model drawn for each batch from
  ``noise_ranges`` (or for each ``patterns_per_draw`` patterns of a batch).
- ``val``, ``test``: noisy patterns at uniformly random orientations (1,000 test patterns, as the paper).
- ``real`` (not a loader; for the baseline callback): kikuchipy's 9 real Ni patterns with their static
  background and detector (binned when the dictionary's detector is a whole fraction of 60×60).
- ``sweep`` (not a loader; for the baseline callback): the test orientations recorded under every condition of
  the noise sweep (:mod:`datamodules.simulate.ebsd_sweep`), prepared like the test set.

A batch is (patterns (B, 1, H, W) float32 in [0, 1], fundamental-zone quaternions (B, 4) float32).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.batches import SplitLoaders
from datamodules.simulate.ebsd import NI_EXAMPLE_PC, EBSDDatasetSpec, check_detector, generate, open_checked
from datamodules.simulate.ebsd_sweep import generate_sweep, read_sweep
from datamodules.sources.registry import data_dir
from materials.ebsd_patterns import NoiseRanges, PatternNoise, check_patterns, process_patterns, to_uint8

SPLIT_SETS = {"train": "dictionary", "val": "val", "test": "test"}  # split → set of the cache file


class PatternRows(Dataset):
    """8-bit patterns and quaternions indexed by whole batches of rows; optionally re-measured per batch."""

    def __init__(self, patterns: torch.Tensor, quaternions: torch.Tensor,
                 noise: PatternNoise | NoiseRanges | None = None, pcx: float = 0.5):
        self.patterns, self.quaternions, self.noise, self.pcx = patterns, quaternions, noise, pcx

    def __len__(self) -> int:
        return len(self.patterns)

    def __getitem__(self, rows):
        rows = torch.as_tensor(rows)
        x = self.patterns[rows]
        if self.noise is None:
            return x.float()[:, None] / 255, self.quaternions[rows]
        if isinstance(self.noise, NoiseRanges):  # a draw per batch, or per patterns_per_draw patterns
            step = self.noise.patterns_per_draw or max(len(x), 1)
            x = torch.cat([process_patterns(self.noise.draw().measure(x[i:i + step], self.pcx))
                           for i in range(0, len(x), step)])
        else:
            x = process_patterns(self.noise.measure(x, self.pcx))
        return x[:, None], self.quaternions[rows]


def prepared(patterns: np.ndarray, static_background=None, batch: int = 8192) -> torch.Tensor:
    """Background-corrected [0, 1] patterns kept as uint8 (n, H, W), processed in batches."""
    return torch.cat([to_uint8(process_patterns(torch.from_numpy(patterns[i:i + batch]), static_background))
                      for i in range(0, len(patterns), batch)]) if len(patterns) else torch.empty(0, dtype=torch.uint8)


def bin_patterns(patterns: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor``×``factor`` pixel blocks (camera binning) of (..., H, W) patterns."""
    *lead, h, w = patterns.shape
    return patterns.reshape(*lead, h // factor, factor, w // factor, factor).astype(np.float64).sum(axis=(-3, -1))


def real_ni_patterns(spec: EBSDDatasetSpec) -> dict | None:
    """kikuchipy's 3×3 real Ni patterns (raw, static background, detector) on the dictionary's detector shape."""
    import kikuchipy as kp

    s = kp.data.nickel_ebsd_small()
    raw, static, detector = s.data.reshape(-1, *s.detector.shape), s.static_background, s.detector.deepcopy()
    check_patterns(raw, name="kikuchipy nickel_ebsd_small")
    if tuple(spec.shape) != tuple(detector.shape):
        factor = detector.shape[0] // spec.shape[0]
        if factor < 1 or tuple(d // factor for d in detector.shape) != tuple(spec.shape) or \
                any(d % factor for d in detector.shape):
            warnings.warn(f"real Ni patterns are {detector.shape}; a {spec.shape} dictionary cannot be compared "
                          "with them (not a whole binning factor): no real-pattern reference", stacklevel=2)
            return None
        raw, static = bin_patterns(raw, factor), bin_patterns(static, factor)
        detector = kp.detectors.EBSDDetector(shape=tuple(spec.shape), pc=detector.pc, tilt=detector.tilt,
                                             sample_tilt=detector.sample_tilt, binning=detector.binning * factor,
                                             px_size=detector.px_size)
    check_detector(detector, spec, name="kikuchipy nickel_ebsd_small")
    return {"raw": raw, "static_background": static, "detector": detector,
            "nav_shape": s.axes_manager.navigation_shape[::-1]}


class EBSDDataModule(SplitLoaders, pl.LightningDataModule):
    """Simulated Ni EBSD pattern dictionaries and noisy test patterns with their orientations.

    Args:
        semi_edge_steps: cubochoric N of each dictionary sampling of the m-3m fundamental zone, concatenated
            (the paper: [100, 50] → 374,852 patterns; the CPU default [35] → 14,313). Or give ``resolution``.
        resolution: average disorientation (°) between dictionary orientations instead (orix converts it to N).
        detector_shape: (rows, columns) of the detector; the geometry is otherwise the real Ni example's.
        pc: projection centre (Bruker) — default the mean of the example's nine.
        n_val, n_test: noisy patterns at random orientations (the paper tests on 1,000).
        train_orientations: train on this many noise-free patterns at uniformly random orientations (seeded, simulated
            once into the cache) instead of the dictionary's grid points; 0 (the paper's way): the dictionary.
        noise: the measurement model of the val/test patterns (and of ``train_noise`` augmentation).
        train_noise: measure every training batch afresh with ``noise``, or (``randomized``) with a noise model
            drawn per batch from ``noise_ranges`` (or per ``noise_ranges.patterns_per_draw`` patterns); false:
            train on the clean dictionary.
        noise_ranges: the ranges of ``train_noise: randomized``.
        train_fraction: train on only this seeded share of the dictionary (quick checks).
        eval_batch_size: validation, test and timed-inference batches (64: OMNet's fastest on 2 AVX2 cores;
            larger batches' feature maps leave the cache, ``make bench-ebsd ARGS='--batch 512'``).
        noise_sweep: also prepare the test orientations under every noise-sweep condition (robustness tests).
    """

    def __init__(self, semi_edge_steps: list[int] | None = None, resolution: float | None = None,
                 detector_shape: tuple[int, int] = (60, 60), pc: tuple[float, float, float] = NI_EXAMPLE_PC,
                 n_val: int = 500, n_test: int = 1000, train_orientations: int = 0,
                 noise: PatternNoise = PatternNoise(),
                 train_noise: bool | Literal["randomized"] = False, noise_ranges: NoiseRanges = NoiseRanges(),
                 train_fraction: float = 1.0, batch_size: int = 64, eval_batch_size: int = 64, seed: int = 0,
                 simulate_batch: int = 2048, noise_sweep: bool = True):
        super().__init__()
        self.save_hyperparameters()
        if semi_edge_steps is not None and resolution is not None:
            raise ValueError("give either semi_edge_steps or resolution, not both")
        if resolution is not None:
            from orix.sampling._cubochoric_sampling import resolution_to_semi_edge_steps

            steps = [int(resolution_to_semi_edge_steps(resolution))]
        else:
            steps = list(semi_edge_steps or [35])
        if detector_shape[0] != detector_shape[1]:
            raise ValueError(f"OMNet takes square patterns; detector_shape is {tuple(detector_shape)}")
        if not 0 < train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        if isinstance(noise, dict):  # as a checkpoint's hyperparameters keep it
            noise = PatternNoise(**noise)
        if isinstance(noise_ranges, dict):
            noise_ranges = NoiseRanges(**{k: tuple(v) if isinstance(v, list) else v for k, v in noise_ranges.items()})
        self.noise_ranges = noise_ranges
        self.spec = EBSDDatasetSpec(tuple(steps), tuple(detector_shape), tuple(pc), n_val=n_val, n_test=n_test,
                                    n_train=train_orientations, noise=noise, seed=seed, batch=simulate_batch)
        self.arrays: dict[str, dict[str, torch.Tensor]] = {}
        self.real: dict | None = None
        self.sweep: dict[str, torch.Tensor] = {}  # condition → prepared uint8 patterns of the test orientations
        self.cleaning_report: dict = {}
        self.generation: dict[str, float] = {}

    @property
    def n_features(self) -> int:
        """Pattern side in pixels (OMNet's input)."""
        return self.spec.shape[0]

    @property
    def path(self) -> Path:
        return data_dir() / "ebsd" / self.spec.cache_name()

    def prepare_data(self):
        _, self.generation = generate(self.spec, data_dir() / "ebsd")
        if self.hparams.noise_sweep:
            generate_sweep(self.spec, data_dir() / "ebsd")

    def setup(self, stage: str | None = None):
        if self.arrays:
            return
        # the splits' sets; where the net trains on random orientations, also the dictionary of dictionary indexing
        reads = {**SPLIT_SETS, "train": "train", "dictionary": "dictionary"} if self.spec.n_train else SPLIT_SETS
        with open_checked(self.path, self.spec) as f:
            data = {key: {"raw": f[name]["patterns"][:], "quaternions": f[name]["quaternions"][:],
                          "euler": f[name]["euler"][:]} for key, name in reads.items()}
            made = {f"simulated_{name}_patterns_per_s": float(f[name].attrs["patterns_per_s"])
                    for name in reads.values() if "patterns_per_s" in f[name].attrs}
        if self.hparams.train_fraction < 1:
            n = len(data["train"]["raw"])
            keep = np.sort(np.random.default_rng(self.hparams.seed).permutation(n)[:max(1, round(
                self.hparams.train_fraction * n))])
            data["train"] = {k: v[keep] for k, v in data["train"].items()}
        for split, arrays in data.items():
            self.arrays[split] = {"patterns": prepared(arrays["raw"]),
                                  "quaternions": torch.from_numpy(arrays["quaternions"]),  # float64, as orix's
                                  "euler": torch.from_numpy(arrays["euler"]).float()}
        self.arrays.setdefault("dictionary", self.arrays["train"])  # what dictionary indexing searches
        self.splits = {split: PatternRows(self.arrays[split]["patterns"], self.arrays[split]["quaternions"].float())
                       for split in SPLIT_SETS}
        if self.hparams.train_noise:  # the ideal training patterns, measured afresh per batch
            noise = self.noise_ranges if self.hparams.train_noise == "randomized" else self.spec.noise
            self.splits["train"] = PatternRows(torch.from_numpy(data["train"]["raw"]),
                                               self.arrays["train"]["quaternions"].float(), noise, self.spec.pc[0])
        self.real = real_ni_patterns(self.spec)
        if self.real is not None:
            self.real["patterns"] = prepared(self.real["raw"], self.real["static_background"])
        if self.hparams.noise_sweep:
            raw = read_sweep(self.spec, data_dir() / "ebsd")
            if not np.array_equal(raw.pop("quaternions"), data["test"]["quaternions"]):
                raise ValueError(f"the noise sweep's orientations differ from the test set's in {self.path}")
            self.sweep = {name: prepared(patterns) for name, patterns in raw.items()}
        self.cleaning_report = {"cache": str(self.path), "semi_edge_steps": list(self.spec.semi_edge_steps),
                                "trained_on": reads["train"],
                                "sizes": {s: len(self.arrays[s]["patterns"]) for s in reads},
                                "real_patterns": 0 if self.real is None else len(self.real["patterns"]),
                                "noise_sweep": {name: len(p) for name, p in self.sweep.items()},
                                **made, **{f"this_run_{k}": v for k, v in self.generation.items()}}
