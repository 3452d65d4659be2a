"""Structure datasets read once and cached: crystal graphs, compositions, Voronoi attributes.

``parsed_structures`` reads a structure file (``datamodules.sources.structures``)
and keeps, per structure, what every representation needs: the crystal graph
(``materials.crystal_graph``: atoms, edges within the cutoff, distances), the
element fractions of ElemNet's 86 elements, the reduced formula and the volume
per atom. ``voronoi_table`` adds the Ward 2017 attributes (``materials.voronoi``),
slow enough to be computed in chunks of ``CHUNK`` structures, in parallel, each
chunk saved as it finishes, so an interrupted run resumes where it stopped.

Every cache records the sha256 of its source file and the options that made it;
one that does not match, or does not load, is rebuilt, never trusted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from datamodules.sources.readers import DataFileError
from datamodules.sources.registry import data_dir, sha256_of
from datamodules.sources.structures import read_structures
from materials.crystal_graph import atom_indices, neighbour_graph
from materials.elements import N_ELEMENTS
from materials.voronoi import N_VORONOI, voronoi_attributes

CACHE_VERSION = 1
VORONOI_VERSION = 2  # 2: sites wrapped into the cell before the tessellation
CHUNK = 32


def _progress(iterable, total: int, desc: str, unit: str = "structure"):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with lightning
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, mininterval=2.0)


def _save_npz(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def cache_path(file: Path, digest: str, target_column: str, id_column: str, skip_bad: bool,
               cutoff: float, max_neighbors: int) -> Path:
    tag = f"{digest[:16]}-{target_column}-{id_column}-{int(skip_bad)}-r{cutoff:g}-k{max_neighbors}-v{CACHE_VERSION}"
    return data_dir() / "cache" / "structures" / f"{file.stem}-{tag}.npz"


def _build(file: Path, digest: str, target_column: str, id_column: str, skip_bad: bool,
           cutoff: float, max_neighbors: int) -> dict:
    table = read_structures(file, target_column, id_column, skip_bad=skip_bad)
    problems = list(table.problems)
    keep, atoms, src, dst, dist, n_atoms, n_edges = [], [], [], [], [], [], []
    fractions, formulas, volumes = [], [], []
    for i, structure in _progress(enumerate(table.structures), len(table), f"crystal graphs of {file.name}"):
        name = f"{table.ids[i]} (row {table.rows[i]})"
        try:
            z = atom_indices(structure, name)
            center, neighbour, distance = neighbour_graph(structure, cutoff, max_neighbors, name)
        except ValueError as err:
            if not skip_bad:
                raise DataFileError(f"{file}, row {table.rows[i]}: {err}") from None
            problems.append((int(table.rows[i]), table.ids[i], str(err)))
            continue
        keep.append(i)
        atoms.append(z), src.append(neighbour), dst.append(center), dist.append(distance)
        n_atoms.append(len(z)), n_edges.append(len(center))
        fractions.append(np.bincount(z, minlength=N_ELEMENTS) / len(z))
        formulas.append(structure.composition.reduced_formula)
        volumes.append(structure.volume / len(structure))
    if not keep:
        raise DataFileError(f"{file}: no structure could be made into a crystal graph ({len(problems)} problems)")
    keep = np.array(keep)
    return {
        "sha256": np.array(digest),
        "ids": np.array([table.ids[i] for i in keep]),
        "rows": table.rows[keep],
        "targets": table.targets[keep],
        "formulas": np.array(formulas),
        "volume_per_atom": np.array(volumes),
        "fractions": np.array(fractions, dtype=np.float32),
        "atoms": np.concatenate(atoms).astype(np.int16),
        "node_ptr": np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
        "edge_src": np.concatenate(src).astype(np.int32),  # neighbour j -> centre i, local to the crystal
        "edge_dst": np.concatenate(dst).astype(np.int32),
        "edge_dist": np.concatenate(dist).astype(np.float32),
        "edge_ptr": np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64),
        "problems": np.array(json.dumps(problems)),
    }


def _consistent(c: dict, digest: str) -> bool:
    n = len(c["ids"])
    return (str(c["sha256"]) == digest and len(c["targets"]) == n and c["fractions"].shape == (n, N_ELEMENTS)
            and len(c["node_ptr"]) == n + 1 and c["node_ptr"][-1] == len(c["atoms"])
            and len(c["edge_ptr"]) == n + 1 and c["edge_ptr"][-1] == len(c["edge_src"]) == len(c["edge_dist"]))


def parsed_structures(file: Path, target_column: str, id_column: str = "material_id", skip_bad: bool = False,
                      cutoff: float = 8.0, max_neighbors: int = 12) -> dict:
    """Per-structure arrays of one file, from a verified cache or built once (see module doc)."""
    digest = sha256_of(file)
    path = cache_path(file, digest, target_column, id_column, skip_bad, cutoff, max_neighbors)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                cached = {k: z[k] for k in z.files}
            if _consistent(cached, digest):
                cached["problems"] = json.loads(str(cached["problems"]))
                return cached
        except Exception:  # noqa: BLE001 - a torn or stale cache is rebuilt
            pass
    built = _build(file, digest, target_column, id_column, skip_bad, cutoff, max_neighbors)
    _save_npz(path, built)
    built["problems"] = json.loads(str(built["problems"]))
    return built


def _voronoi_chunk(structures: list) -> np.ndarray:
    return np.stack([voronoi_attributes(s) for s in structures])


def voronoi_table(file: Path, parsed: dict, target_column: str, id_column: str = "material_id",
                  rows: np.ndarray | None = None, n_jobs: int = -1) -> np.ndarray:
    """(len(rows), N_VORONOI) Ward 2017 attributes of ``parsed`` structures ``rows`` (all by default).

    Only the chunks that hold the requested rows are computed; each is saved as
    it finishes (under ``<cache>.voronoi/``) together with the ids it covers.
    """
    n = len(parsed["ids"])
    rows = np.arange(n) if rows is None else np.asarray(rows)
    folder = data_dir() / "cache" / "structures" / f"{file.stem}-{str(parsed['sha256'])[:16]}-voronoi-v{VORONOI_VERSION}"
    needed = np.unique(rows // CHUNK)
    chunks: dict[int, np.ndarray] = {}
    missing = []
    for k in needed:
        ids = parsed["ids"][k * CHUNK:(k + 1) * CHUNK]
        try:
            with np.load(folder / f"chunk-{k:05d}.npz", allow_pickle=False) as z:
                if np.array_equal(z["ids"], ids) and z["values"].shape == (len(ids), N_VORONOI):
                    chunks[k] = z["values"]
                    continue
        except Exception:  # noqa: BLE001 - absent or torn: compute it
            pass
        missing.append(k)
    if missing:
        want = {parsed["ids"][i] for k in missing for i in range(k * CHUNK, min(n, (k + 1) * CHUNK))}
        table = read_structures(file, target_column, id_column, skip_bad=True)
        by_id = {ident: s for ident, s in zip(table.ids, table.structures) if ident in want}
        jobs = (os.cpu_count() or 1) if n_jobs in (-1, 0, None) else n_jobs
        work = [[by_id[i] for i in parsed["ids"][k * CHUNK:(k + 1) * CHUNK]] for k in missing]
        if jobs > 1 and len(missing) > 1:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(jobs)
            results = pool.imap(_voronoi_chunk, work)
        else:
            pool, results = None, map(_voronoi_chunk, work)
        try:
            label = f"Voronoi attributes of {file.name} ({CHUNK} per chunk)"
            for k, values in _progress(zip(missing, results), len(missing), label, unit="chunk"):
                _save_npz(folder / f"chunk-{k:05d}.npz", {"ids": parsed["ids"][k * CHUNK:(k + 1) * CHUNK],
                                                          "values": values})
                chunks[k] = values
        finally:
            if pool is not None:
                pool.terminate()
    return np.stack([chunks[i // CHUNK][i % CHUNK] for i in rows])
