"""The noise sweep: the test orientations of an EBSD pattern set recorded under every named condition of
:data:`materials.ebsd_patterns.NOISE_SWEEP`, simulated once into a verified HDF5 cache.

Each condition's 1,000 (``n_test``) patterns are the test set's orientations projected by kikuchipy at the
dictionary's projection centre plus the condition's ``pc_error`` and measured with its noise; the noise of
every block of 256 patterns is seeded by the set's seed, the condition's name and the block, so a condition
is the same from its name and seed alone, whatever other conditions the sweep holds. The file
(``<data>/ebsd/ni-sweep-v<version>-<H>x<W>-<hash>.h5``) records its parameters; it is written to a temporary
name and renamed when complete (it takes seconds), and read back through its Fletcher-32 checksums: a file that
fails them is moved aside and simulated again.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np

from datamodules.simulate.ebsd import CHUNK, EBSDDatasetSpec, master_pattern, measure_blocks, orientations, project
from datamodules.simulate.h5cache import open_spec_file
from materials.ebsd_patterns import NOISE_SWEEP, NOISE_SWEEP_VERSION, MeasurementCondition


def sweep_content(spec: EBSDDatasetSpec, conditions: dict[str, MeasurementCondition] = NOISE_SWEEP) -> dict:
    """What decides the sweep's patterns: the test set (geometry, orientations' seed, size) and the conditions."""
    test_set = {k: v for k, v in spec.content().items() if k not in ("semi_edge_steps", "n_val", "n_train", "noise")}
    return {"noise_sweep_version": NOISE_SWEEP_VERSION, "test_set": test_set,
            "conditions": {name: {"noise": c.noise.content(), "pc_error": [float(e) for e in c.pc_error]}
                           for name, c in conditions.items()}}


def sweep_cache_name(spec: EBSDDatasetSpec, conditions: dict[str, MeasurementCondition] = NOISE_SWEEP) -> str:
    digest = hashlib.sha256(json.dumps(sweep_content(spec, conditions), sort_keys=True).encode()).hexdigest()[:12]
    return f"ni-sweep-v{NOISE_SWEEP_VERSION}-{spec.shape[0]}x{spec.shape[1]}-{digest}.h5"


def measure_condition(spec: EBSDDatasetSpec, name: str, condition: MeasurementCondition,
                      ideal: np.ndarray) -> np.ndarray:
    """Camera frames (n, H, W) uint8 of the ideal patterns under ``condition``, seeded by (seed, name, block)."""
    tag = zlib.crc32(name.encode())
    return measure_blocks(condition.noise, spec.pc[0] + condition.pc_error[0], ideal, 0,
                          lambda block: (spec.seed * 2**32 + tag) * 4096 + block)


def generate_sweep(spec: EBSDDatasetSpec, root: Path,
                   conditions: dict[str, MeasurementCondition] = NOISE_SWEEP) -> Path:
    """The sweep file of ``spec``'s test orientations under ``conditions`` (simulated unless cached)."""
    import dataclasses

    import h5py

    path = root / sweep_cache_name(spec, conditions)
    if path.exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    q = orientations(spec, "test")
    mp, ideal = master_pattern(), {}
    part = path.with_suffix(".part.h5")
    with h5py.File(part, "w") as f:
        f.attrs["spec"] = json.dumps(sweep_content(spec, conditions), sort_keys=True)
        f.create_dataset("quaternions", data=q, fletcher32=True, chunks=True)
        for name, condition in conditions.items():
            pc = tuple(float(p + e) for p, e in zip(spec.pc, condition.pc_error))
            if pc not in ideal:
                ideal[pc] = project(mp, dataclasses.replace(spec, pc=pc).detector(), q, spec.energy)
            f.create_dataset(name, data=measure_condition(spec, name, condition, ideal[pc]),
                             chunks=(min(CHUNK, len(q)), *spec.shape), compression="gzip", fletcher32=True)
    part.replace(path)
    return path


def read_sweep(spec: EBSDDatasetSpec, root: Path,
               conditions: dict[str, MeasurementCondition] = NOISE_SWEEP) -> dict[str, np.ndarray]:
    """{condition: raw uint8 patterns (n_test, H, W)} and ``"quaternions"``, every chunk checksum-verified; a
    file that fails (a chunk's checksum, its recorded parameters) is moved aside (``.corrupt``) and simulated
    again."""
    import warnings

    path = generate_sweep(spec, root, conditions)
    try:
        with open_spec_file(path, sweep_content(spec, conditions), "EBSD noise-sweep cache") as f:
            return {name: f[name][:] for name in ("quaternions", *conditions)}
    except (OSError, KeyError, ValueError) as err:
        aside = path.with_suffix(".corrupt")
        warnings.warn(f"{path}: unusable ({type(err).__name__}: {err}); moved to {aside.name} and simulated again",
                      stacklevel=2)
        path.replace(aside)
        with open_spec_file(generate_sweep(spec, root, conditions), sweep_content(spec, conditions),
                            "EBSD noise-sweep cache") as f:
            return {name: f[name][:] for name in ("quaternions", *conditions)}
