"""Datasets derived from registered ones by an exact join, written once under ``data/derived/``.

``mp_on_hull`` (diss. 5.3.1): the Materials Project formation energies (``mp_e_form``, the crabnet
wheel's matbench file, one row per structure) of the compositions that are on the convex hull
(energy above hull exactly 0 in ``mp_e_hull``, all three of its split files). Both sides are keyed by
reduced composition (``Fe2O3`` = ``Fe4O6``); of the polymorphs of an on-hull composition the lowest
formation energy is kept, which is the ground state that puts it on the hull. The dissertation's MP
snapshot had 23,641 such compounds; the crabnet wheel's files give the count in the file's report.

A derived file is named by the sha256 of its inputs and carries a ``.sha256`` of its own content;
a file that does not match is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules.sources.readers import read_csv
from datamodules.sources.registry import data_dir, dataset_files, sha256_of
from materials.composition import composition_keys, parse_compositions


def _parsed(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(formulas, targets, element fractions) of the rows of a formula,target CSV that parse."""
    table = read_csv(path, skip_bad=True)
    parsed = parse_compositions(table.formulas, str(path), rows=table.rows, skip_bad=True)
    formulas = [f for f, ok in zip(table.formulas, parsed.ok) if ok]
    return formulas, table.targets[parsed.ok], parsed.fractions


def mp_on_hull(e_form: Path, e_hull: list[Path]) -> pd.DataFrame:
    """formula, target (eV/atom) of the on-hull compositions, one row each (the lowest-energy polymorph)."""
    hull = [_parsed(path) for path in e_hull]
    formulas, targets, fractions = _parsed(e_form)
    # one key space for both sides: composition_keys numbers the distinct compositions of one array
    keys = composition_keys(np.concatenate([fractions, *(f for _, _, f in hull)]))
    form_keys, hull_keys = keys[:len(fractions)], keys[len(fractions):]
    on_hull = np.unique(hull_keys[np.concatenate([energies for _, energies, _ in hull]) == 0.0])
    table = pd.DataFrame({"formula": formulas, "target": targets, "key": form_keys})
    table = table[table["key"].isin(on_hull)]
    table = table.sort_values(["key", "target"], kind="stable").drop_duplicates("key", keep="first")
    return table.sort_index()[["formula", "target"]].reset_index(drop=True)


@dataclass(frozen=True)
class Derived:
    sources: tuple[str, ...]  # registered datasets, in the order ``build`` takes them
    build: Callable[[dict[str, dict[str, Path]]], pd.DataFrame]


DERIVED: dict[str, Derived] = {
    "mp_on_hull": Derived(("mp_e_form", "mp_e_hull"), lambda files: mp_on_hull(
        files["mp_e_form"]["all"], [files["mp_e_hull"][s] for s in ("train", "val", "test")])),
}


def derived_file(name: str) -> Path:
    """The derived dataset's CSV: built from its verified inputs once, verified on every later use."""
    spec = DERIVED[name]
    files = {source: dataset_files(source) for source in spec.sources}
    inputs = "".join(sha256_of(p) for source in spec.sources for _, p in sorted(files[source].items()))
    path = data_dir() / "derived" / f"{name}-{hashlib.sha256(inputs.encode()).hexdigest()[:16]}.csv"
    stamp = path.with_suffix(".csv.sha256")
    if path.exists() and stamp.exists() and stamp.read_text().strip() == sha256_of(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.csv")
    spec.build(files).to_csv(tmp, index=False)
    tmp.replace(path)
    stamp.write_text(sha256_of(path) + "\n")
    return path

