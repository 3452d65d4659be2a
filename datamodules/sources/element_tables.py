"""Element embedding tables shipped in registry packages, in the order of ElemNet's 86 elements.

``element_table("mat2vec")``: the 200-d mat2vec embeddings (Tshitoyan et al., Nature 571, 95 (2019))
from the ``crabnet==2.0.8`` wheel, the table CrabNet and (as matscholar200) Roost start from. The
file is fetched and verified by sha256 like the datasets, parsed once and cached as ``.npy``.
"""

from __future__ import annotations

import csv

import numpy as np

from datamodules.sources.registry import ELEMENT_TABLES, data_file
from materials.elements import ELEMNET_ELEMENTS


def element_table(name: str) -> np.ndarray:
    """(86, d) float32: one row per element of :data:`ELEMNET_ELEMENTS`."""
    if name not in ELEMENT_TABLES:
        raise ValueError(f"unknown element table {name!r}; known: {', '.join(sorted(ELEMENT_TABLES))}")
    path = data_file(ELEMENT_TABLES[name])
    cache = path.with_suffix(".elemnet86.npy")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        table = np.load(cache, allow_pickle=False)
        if table.shape[0] == len(ELEMNET_ELEMENTS):
            return table
    rows: dict[str, np.ndarray] = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        for line, row in enumerate(reader, start=2):
            try:
                rows[row[0]] = np.array(row[1:], dtype=np.float32)
            except ValueError as err:
                raise ValueError(f"{path}, row {line} ({row[0]!r}): not a row of numbers ({err})") from None
            if len(rows[row[0]]) != len(header) - 1:
                raise ValueError(f"{path}, row {line} ({row[0]!r}): {len(rows[row[0]])} values, "
                                 f"the header has {len(header) - 1}")
    missing = [e for e in ELEMNET_ELEMENTS if e not in rows]
    if missing:
        raise ValueError(f"{path}: no row for the element(s) {', '.join(missing)}")
    table = np.stack([rows[e] for e in ELEMNET_ELEMENTS])
    tmp = cache.with_suffix(".part.npy")
    np.save(tmp, table)
    tmp.replace(cache)
    return table
