"""Microstructure volume element (MVE) datasets, labelled by the FFT elasticity solver.

One HDF5 file per parameter set, named by the hash of the parameters and the
simulator version, under ``<data>/mve/``. Element ``i`` is drawn from its own seed
(:func:`element_seeds`), so an interrupted generation resumes after the last
finished batch and produces the same file as an uninterrupted one, whatever
the batch size. Every array is chunked per element, gzip-compressed and
Fletcher-32 checksummed, so a corrupted chunk fails on read; a file whose
recorded parameters or version differ from the request is refused.

Stored per element: ``micro`` (uint8 voxels), ``volume_fraction``,
``correlation_length`` (3 voxels: the family's length per axis), with several
``morphologies`` each element's ``morphology`` (an index into them), ``c11`` (GPa: mean σ11 under unit
macroscopic ε11, the other strains 0), ``iterations`` and ``residual`` of the
solver, and for localization ``strain11`` (local ε11 over the applied ε11,
float32).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from datamodules.simulate.h5cache import open_spec_file, require_done
from datamodules.simulate.worker import commit_lock, in_passive_worker
from materials.elasticity import TwoPhaseElasticity, effective_c11
from materials.microstructure import MicrostructureSampler

SIMULATOR_VERSION = 1


@dataclass(frozen=True)
class MVEDatasetSpec:
    """Everything that decides the content of an MVE dataset (and so its cache name)."""

    kind: Literal["homogenization", "localization"] = "homogenization"
    n_elements: int = 400
    size: int = 51
    volume_fraction: tuple[float, float] = (0.1, 0.9)
    correlation_length: tuple[float, float] = (1.0, 5.0)
    anisotropic: bool = False
    contrast: float = 50.0
    young_hard: float = 120.0
    poisson: float = 0.3
    tol: float = 1e-5
    max_iter: int = 1000
    seed: int = 0
    batch: int = field(default=8, compare=False)  # elements per solver call: speed only, not content
    morphologies: tuple[str, ...] | None = None  # families drawn from (materials.morphologies); None: Gaussian
    precision: Literal["float64", "float32"] = "float64"  # the solver's arithmetic

    def __post_init__(self):
        if self.n_elements < 1:
            raise ValueError(f"n_elements must be >= 1, got {self.n_elements}")
        if self.precision not in ("float64", "float32"):
            raise ValueError(f"precision must be float64 or float32, got {self.precision!r}")
        self.sampler(), self.material()  # validates ranges, contrast and Poisson ratio

    def sampler(self) -> MicrostructureSampler:
        return MicrostructureSampler(self.size, tuple(self.volume_fraction), tuple(self.correlation_length),
                                     self.anisotropic, None if self.morphologies is None else tuple(self.morphologies))

    def material(self) -> TwoPhaseElasticity:
        return TwoPhaseElasticity(self.young_hard, self.contrast, self.poisson, self.poisson)

    def content(self) -> dict:
        """The parameters as JSON-ready numbers of one type each: ``contrast=50`` from Python and ``50.0`` from
        a YAML file name the same dataset."""
        d = asdict(self)
        d.pop("batch")
        for name in ("contrast", "young_hard", "poisson", "tol"):
            d[name] = float(d[name])
        for name in ("n_elements", "size", "max_iter", "seed"):
            d[name] = int(d[name])
        d["volume_fraction"] = [float(v) for v in self.volume_fraction]
        d["correlation_length"] = [float(v) for v in self.correlation_length]
        if self.morphologies is None:  # the datasets made before other families existed keep their names
            d.pop("morphologies")
        else:
            d["morphologies"] = list(self.morphologies)
        if self.precision == "float64":  # and those solved in float64, the only precision there was
            d.pop("precision")
        return {"simulator_version": SIMULATOR_VERSION, **d}

    def cache_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.kind}-{self.size}c{self.contrast:g}-n{self.n_elements}-{digest}.h5"


def element_seeds(spec: MVEDatasetSpec, rows) -> list[int]:
    return [spec.seed * 1_000_003 + int(i) for i in rows]


def _create(path: Path, spec: MVEDatasetSpec):
    import h5py

    n, s = spec.n_elements, spec.size
    with h5py.File(path, "w") as f:
        f.attrs["spec"] = json.dumps(spec.content(), sort_keys=True)
        f.attrs["n_done"] = 0
        voxels = {"chunks": (1, s, s, s), "compression": "gzip", "fletcher32": True}
        f.create_dataset("micro", (n, s, s, s), dtype="u1", **voxels)
        if spec.kind == "localization":
            f.create_dataset("strain11", (n, s, s, s), dtype="f4", **voxels)
        if spec.morphologies is not None:  # each element's family, an index into spec.morphologies
            f.create_dataset("morphology", (n,), dtype="u1", fletcher32=True)
        for name, shape, dtype in (("volume_fraction", (n,), "f8"), ("correlation_length", (n, 3), "f8"),
                                   ("c11", (n,), "f8"), ("iterations", (n,), "i4"), ("residual", (n,), "f8")):
            f.create_dataset(name, shape, dtype=dtype, fletcher32=True)


def open_checked(path: Path, spec: MVEDatasetSpec, complete: bool = True):
    """The dataset file, after checking it holds ``spec`` (and, with ``complete``, every element)."""
    f = open_spec_file(path, spec.content(), "cached MVE dataset")
    if complete:
        require_done(f, path, int(f.attrs["n_done"]), spec.n_elements, "elements")
    return f


#: voxels left to solve above which a float32 CPU generation runs in a passive-OpenMP worker (its start costs
#: ~3 s; 10^7 voxels are ~75 elements of 51³, half a minute of solving)
WORKER_VOXELS = 10_000_000


def generate(spec: MVEDatasetSpec, root: Path, device: str = "auto", progress: bool = True,
             worker: bool | None = None) -> Path:
    """Generate (or finish) the dataset of ``spec`` under ``root``; return its path.

    A float32 dataset on a CPU is solved in a worker process with passive OpenMP threads, where the FFTs are
    scipy's (:mod:`datamodules.simulate.worker`), when more than :data:`WORKER_VOXELS` voxels are left, or as
    ``worker`` says. ``make bench-mve`` measures both ways: 51³ at contrast 50, 0.36–0.38 s per element in the
    worker against 0.44–0.48 in the process; in float64 scipy's FFT is no faster than torch's and the worker
    loses (0.51–0.64 s against 0.49–0.55)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / spec.cache_name()
    if not path.exists():
        _create(path, spec)
    with open_checked(path, spec, complete=False) as f:
        start = int(f.attrs["n_done"])
    if start == spec.n_elements:
        return path
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if worker is None:
        worker = (device == "cpu" and spec.precision == "float32"
                  and (spec.n_elements - start) * spec.size ** 3 > WORKER_VOXELS)
    if worker:
        in_passive_worker(_solve, spec, path, start, device, progress)
    else:
        _solve(spec, path, start, device, progress)
    return path


def _solve(spec: MVEDatasetSpec, path: Path, start: int, device: str, progress: bool) -> None:
    """Draw and label elements ``start`` … of the dataset file, one batch at a time (each batch committed)."""
    import h5py
    from tqdm.auto import tqdm

    sampler, material = spec.sampler(), spec.material()
    began, bar = time.perf_counter(), tqdm(total=spec.n_elements, initial=start, unit="MVE", disable=not progress,
                                           desc=f"solving {spec.kind} MVEs {spec.size}^3 c={spec.contrast:g}")
    for first in range(start, spec.n_elements, spec.batch):
        count = min(spec.batch, spec.n_elements - first)
        drawn = sampler.draw(element_seeds(spec, range(first, first + count)), device=device)
        c11, solution = effective_c11(drawn["micro"].to(device), material, tol=spec.tol, max_iter=spec.max_iter,
                                      dtype=getattr(torch, spec.precision))
        with commit_lock, h5py.File(path, "r+") as f:  # a worker whose caller died exits between commits
            rows = slice(first, first + count)
            f["micro"][rows] = drawn["micro"].numpy()
            f["volume_fraction"][rows] = drawn["volume_fraction"].numpy()
            f["correlation_length"][rows] = drawn["correlation_length"].numpy()
            if "morphology" in f:
                f["morphology"][rows] = drawn["morphology"].numpy()
            f["c11"][rows] = c11.cpu().numpy()
            f["iterations"][rows] = solution.iterations.cpu().numpy()
            f["residual"][rows] = solution.residual.cpu().numpy()
            if spec.kind == "localization":
                f["strain11"][rows] = solution.strain[:, 0].cpu().numpy().astype(np.float32)
            f.attrs["n_done"] = first + count
        bar.update(first + count - bar.n)
        rate = (bar.n - start) / (time.perf_counter() - began)
        bar.set_postfix(cg_iterations=int(solution.iterations.float().mean()), MVE_per_s=f"{rate:.3g}")
    bar.close()
