"""Ni EBSD pattern sets from physics, simulated once into a versioned HDF5 cache.

Patterns are kikuchipy's projection of its Ni master pattern (``nickel_ebsd_master_pattern_small``: EMsoft,
20 kV, square Lambert, both hemispheres; offline) onto a detector with the geometry of kikuchipy's real Ni
example (``nickel_ebsd_small``: 60×60, Bruker PC (0.4251, 0.2134, 0.5007) = the mean of its 3×3 PCs, sample
tilt 70°, detector tilt 0°), as 8-bit ``get_patterns(..., dtype_out=uint8)`` output (each pattern stretched
to [0, 255]). One file per parameter set (``<data>/ebsd/ni-…-<hash>.h5``), three or four sets in it:

- ``dictionary``: orix's cubochoric sampling of the m-3m fundamental zone, one or more semi-edge step counts N
  (Jha et al.: N = 100 → 333,227 and N = 50 → 41,625 patterns, 374,852 together); noise-free.
- ``val`` and ``test``: orientations uniform on SO(3) (seeded), reduced to the fundamental zone, measured with
  :class:`materials.ebsd_patterns.PatternNoise` (the dissertation's 1,000 test patterns).
- ``train`` (only where ``n_train`` > 0): noise-free patterns at ``n_train`` orientations uniform on SO(3) (seeded
  apart from the test and validation orientations), to train on instead of the dictionary's grid points.

Stored per set: ``patterns`` (n, H, W) uint8 (chunks of 256 patterns, gzip, Fletcher-32 checksums),
``quaternions`` (n, 4) and Bunge ``euler`` (n, 3) from orix, the count of finished patterns ``n_done`` and the
simulation rate ``patterns_per_s`` of the call that finished the set.
:func:`generate` resumes an interrupted generation after the last finished batch (the noise of each block of
256 patterns has its own seed, so the result does not depend on where it stopped), re-reads every finished
chunk, resumes from the first one whose checksum fails, and moves aside (``.corrupt``) and regenerates a file
that does not open or whose recorded parameters differ from its name's. A cache is never used unverified.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from datamodules.simulate.h5cache import open_spec_file
from materials.ebsd_patterns import PatternNoise
from materials.orientations import random_quaternions, to_fundamental_zone

SIMULATOR_VERSION = 1
SETS = ("dictionary", "val", "test")  # in every file; "train" too where a spec asks for it (EBSDDatasetSpec.sets)
SEED_INDEX = {name: i for i, name in enumerate((*SETS, "train"))}  # seeds a set's random orientations
CHUNK = 256  # patterns per HDF5 chunk and per noise seed block
# kikuchipy's real Ni example (nickel_ebsd_small): the mean of its nine projection centres (Bruker convention)
NI_EXAMPLE_PC = (0.425139, 0.213367, 0.500707)


@dataclass(frozen=True)
class EBSDDatasetSpec:
    """Everything that decides the content of a pattern cache (and so its name)."""

    semi_edge_steps: tuple[int, ...] = (35,)
    shape: tuple[int, int] = (60, 60)
    pc: tuple[float, float, float] = NI_EXAMPLE_PC
    sample_tilt: float = 70.0
    tilt: float = 0.0
    energy: float = 20.0
    n_val: int = 500
    n_test: int = 1000
    n_train: int = 0  # noise-free patterns at random orientations to train on (0: none, the dictionary's grid)
    noise: PatternNoise = PatternNoise()
    seed: int = 0
    batch: int = field(default=2048, compare=False)  # patterns per kikuchipy call: speed only, not content

    def __post_init__(self):
        if not self.semi_edge_steps or min(self.semi_edge_steps) < 1:
            raise ValueError(f"semi_edge_steps must be one or more cubochoric N >= 1, got {self.semi_edge_steps}")
        if len(self.shape) != 2 or min(self.shape) < 4:
            raise ValueError(f"detector shape must be (rows, columns) of at least 4 pixels, got {self.shape}")
        if not all(0 < p < 1.5 for p in self.pc):
            raise ValueError(f"projection centre must be Bruker fractions of the detector, got {self.pc}")
        if self.n_val < 1 or self.n_test < 1:
            raise ValueError(f"n_val and n_test must be >= 1, got {self.n_val}, {self.n_test}")
        if self.n_train < 0:
            raise ValueError(f"n_train must be >= 0 (0: no random training set), got {self.n_train}")

    def sets(self) -> tuple[str, ...]:
        """The pattern sets of this spec's file."""
        return (*SETS, "train") if self.n_train else SETS

    def content(self) -> dict:
        import kikuchipy

        return {"simulator_version": SIMULATOR_VERSION, "kikuchipy": kikuchipy.__version__,
                "master_pattern": "nickel_ebsd_master_pattern_small(lambert, both)",
                "semi_edge_steps": list(self.semi_edge_steps), "shape": list(self.shape),
                "pc": [round(float(p), 6) for p in self.pc], "sample_tilt": self.sample_tilt, "tilt": self.tilt,
                "energy": self.energy, "n_val": self.n_val, "n_test": self.n_test, "noise": self.noise.content(),
                "seed": self.seed, **({"n_train": self.n_train} if self.n_train else {})}  # old names kept

    def cache_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()[:12]
        n = "+".join(str(s) for s in self.semi_edge_steps)
        return f"ni-N{n}-{self.shape[0]}x{self.shape[1]}-{digest}.h5"

    def detector(self):
        from kikuchipy.detectors import EBSDDetector

        return EBSDDetector(shape=tuple(self.shape), pc=tuple(self.pc), sample_tilt=self.sample_tilt, tilt=self.tilt,
                            convention="bruker")


def master_pattern():
    """kikuchipy's Ni master pattern, intensities as float32 (so ``get_patterns`` stretches each pattern)."""
    import kikuchipy as kp

    mp = kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="both")
    mp.data = mp.data.astype(np.float32)
    return mp


def project(mp, detector, quaternions: np.ndarray, energy: float) -> np.ndarray:
    """kikuchipy's own 8-bit simulated patterns (n, H, W) of orientations (n, 4)."""
    from orix.quaternion import Rotation

    s = mp.get_patterns(Rotation(np.asarray(quaternions, dtype=np.float64)), detector, energy=energy,
                        dtype_out=np.uint8, compute=True, show_progressbar=False)
    return np.asarray(s.data).reshape(len(quaternions), *detector.shape)


def orientations(spec: EBSDDatasetSpec, name: str) -> np.ndarray:
    """The (n, 4) unit quaternions (w ≥ 0, fundamental zone of m-3m) of set ``name``."""
    if name == "dictionary":
        from orix.quaternion import symmetry
        from orix.sampling import get_sample_fundamental

        parts = [get_sample_fundamental(point_group=symmetry.Oh, method="cubochoric", semi_edge_steps=int(n)).data
                 for n in spec.semi_edge_steps]
        q = np.concatenate(parts).reshape(-1, 4)
        return np.where(q[:, :1] < 0, -q, q)
    n = {"val": spec.n_val, "test": spec.n_test, "train": spec.n_train}[name]
    g = torch.Generator().manual_seed(spec.seed * 1_000_003 + SEED_INDEX[name])
    return to_fundamental_zone(random_quaternions(n, g)).numpy()


def _create(path: Path, spec: EBSDDatasetSpec):
    import h5py
    from orix.quaternion import Rotation

    with h5py.File(path, "w") as f:
        f.attrs["spec"] = json.dumps(spec.content(), sort_keys=True)
        for name in spec.sets():
            q = orientations(spec, name)
            g = f.create_group(name)
            g.attrs["n_done"] = 0
            g.create_dataset("patterns", (len(q), *spec.shape), dtype="u1", chunks=(min(CHUNK, len(q)), *spec.shape),
                             compression="gzip", fletcher32=True)
            g.create_dataset("quaternions", data=q, fletcher32=True, chunks=True)
            g.create_dataset("euler", data=Rotation(q).to_euler(), fletcher32=True, chunks=True)


def _verify(path: Path, spec: EBSDDatasetSpec) -> dict[str, int] | str:
    """Finished patterns per set after re-reading every finished chunk, or why the file cannot be used."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if json.loads(f.attrs.get("spec", "{}")) != spec.content():
                return "its recorded parameters differ from the ones its name stands for"
            done = {}
            for name in spec.sets():
                g = f[name]
                g["quaternions"][:], g["euler"][:]
                done[name] = int(g.attrs["n_done"])
                for first in range(0, done[name], CHUNK):
                    try:
                        g["patterns"][first:min(first + CHUNK, done[name])]
                    except OSError:
                        warnings.warn(f"{path}: {name} patterns {first}..{first + CHUNK - 1} fail their checksum: "
                                      f"regenerating from pattern {first}", stacklevel=3)
                        done[name] = first
                        break
            return done
    except (OSError, KeyError, ValueError) as err:
        return f"it cannot be read ({type(err).__name__}: {err})"


def open_checked(path: Path, spec: EBSDDatasetSpec):
    """The finished cache file of ``spec``, opened for reading, after checking its parameters and completeness."""
    f = open_spec_file(path, spec.content(), "EBSD pattern cache")
    for name in spec.sets():
        if int(f[name].attrs["n_done"]) != len(f[name]["quaternions"]):
            f.close()
            raise ValueError(f"{path}: {name} set unfinished; run prepare_data to resume the simulation")
    return f


def generate(spec: EBSDDatasetSpec, root: Path, progress: bool = True) -> tuple[Path, dict[str, float]]:
    """Simulate (or finish, or repair) the pattern sets of ``spec`` under ``root``.

    Returns the file and what this call simulated: ``patterns`` and ``patterns_per_s`` (kikuchipy projection
    plus measurement noise, per set and in total).
    """
    import h5py
    from tqdm.auto import tqdm

    root.mkdir(parents=True, exist_ok=True)
    path = root / spec.cache_name()
    done = _verify(path, spec) if path.exists() else None
    if isinstance(done, str):
        aside = path.with_suffix(".corrupt")
        warnings.warn(f"{path}: {done}; moved to {aside.name} and simulating it again", stacklevel=2)
        path.replace(aside)
        done = None
    if done is None:
        _create(path, spec)
        done = dict.fromkeys(spec.sets(), 0)
    with h5py.File(path, "r") as f:
        sizes = {name: len(f[name]["quaternions"]) for name in spec.sets()}
    stats: dict[str, float] = {"patterns": 0.0, "seconds": 0.0}
    if all(done[n] == sizes[n] for n in spec.sets()):
        return path, stats
    mp, detector = master_pattern(), spec.detector()
    step = max(CHUNK, spec.batch // CHUNK * CHUNK)
    for name in spec.sets():
        if done[name] == sizes[name]:
            continue
        with h5py.File(path, "r") as f:
            q_all = f[name]["quaternions"][:]
        bar = tqdm(total=sizes[name], initial=done[name], unit="pattern", disable=not progress,
                   desc=f"simulating {name} Ni EBSD patterns {spec.shape[0]}x{spec.shape[1]}")
        began, start = time.perf_counter(), done[name]
        for first in range(start, sizes[name], step):
            rows = slice(first, min(first + step, sizes[name]))
            patterns = project(mp, detector, q_all[rows], spec.energy)
            if name in ("val", "test"):  # the dictionary and the training set stay noise-free
                patterns = _measure(spec, name, first, patterns)
            with h5py.File(path, "r+") as f:
                f[name]["patterns"][rows] = patterns
                f[name].attrs["n_done"] = rows.stop
            bar.update(rows.stop - bar.n)
            bar.set_postfix(patterns_per_s=f"{(bar.n - start) / (time.perf_counter() - began):.0f}")
        bar.close()
        seconds = time.perf_counter() - began
        stats[f"{name}_patterns_per_s"] = (sizes[name] - start) / seconds
        with h5py.File(path, "r+") as f:  # how fast this set was made, for whoever reads the cache later
            f[name].attrs["patterns_per_s"] = stats[f"{name}_patterns_per_s"]
        stats["patterns"] += sizes[name] - start
        stats["seconds"] += seconds
    stats["patterns_per_s"] = stats["patterns"] / max(stats["seconds"], 1e-9)
    print(f"simulated {stats['patterns']:.0f} Ni EBSD patterns in {stats['seconds']:.1f} s "
          f"({stats['patterns_per_s']:.0f} patterns/s) -> {path}")
    return path, stats


def measure_blocks(noise, pcx: float, ideal: np.ndarray, first: int, block_seed) -> np.ndarray:
    """Camera frames of ideal patterns starting at row ``first`` (a multiple of CHUNK) under ``noise``; the block
    of CHUNK patterns numbered b is measured with seed ``block_seed(b)``, so a set does not depend on where its
    simulation stopped and resumed."""
    out = np.empty_like(ideal)
    for start in range(0, len(ideal), CHUNK):
        g = torch.Generator().manual_seed(block_seed((first + start) // CHUNK))
        out[start:start + CHUNK] = noise.measure(torch.from_numpy(ideal[start:start + CHUNK]), pcx, g).numpy()
    return out


def _measure(spec: EBSDDatasetSpec, name: str, first: int, ideal: np.ndarray) -> np.ndarray:
    """The noisy camera frames of set ``name``: one seed per block of CHUNK patterns."""
    return measure_blocks(spec.noise, spec.pc[0], ideal, first,
                          lambda block: (spec.seed * len(SETS) + SETS.index(name)) * 2**32 + block)


def check_detector(detector, spec: EBSDDatasetSpec, pc_tolerance: float = 0.01, name: str = "patterns") -> None:
    """Raise if a detector (kikuchipy ``EBSDDetector``) does not have the geometry the dictionary was made for."""
    if tuple(detector.shape) != tuple(spec.shape):
        raise ValueError(f"{name}: detector is {detector.shape[0]}x{detector.shape[1]} pixels, the dictionary's "
                         f"{spec.shape[0]}x{spec.shape[1]}")
    for attr in ("sample_tilt", "tilt"):
        if abs(float(getattr(detector, attr)) - getattr(spec, attr)) > 0.1:
            raise ValueError(f"{name}: detector {attr} {float(getattr(detector, attr)):g}° differs from the "
                             f"dictionary's {getattr(spec, attr):g}°")
    pcs = np.asarray(detector.pc).reshape(-1, 3)  # kikuchipy keeps PCs in the Bruker convention
    worst = np.abs(pcs - np.asarray(spec.pc)).max(axis=1)
    if worst.max() > pc_tolerance:
        i = int(worst.argmax())
        raise ValueError(f"{name}: projection centre {np.round(pcs[i], 4).tolist()} (pattern {i}) is more than "
                         f"{pc_tolerance} from the dictionary's {list(spec.pc)}")
