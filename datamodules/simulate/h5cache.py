"""Opening a simulated HDF5 cache for reading: its recorded parameters first, then its completeness.

Every simulator here writes ``attrs["spec"]`` (the JSON of its parameters and simulator version) and a
``n_done`` counter as it goes; reading checks both so that a cache made for other parameters, or one a
killed run left half written, is never taken for the requested dataset.
"""

from __future__ import annotations

import json
from pathlib import Path


def open_spec_file(path: Path, content: dict, what: str):
    """``path`` opened read-only, after checking that it records ``content`` as its parameters."""
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"{path}: no {what}; run prepare_data (make train) to simulate it")
    f = h5py.File(path, "r")
    recorded = json.loads(f.attrs.get("spec", "{}"))
    if recorded != content:
        f.close()
        raise ValueError(f"{path}: {what} was made with other parameters or simulator version "
                         f"({recorded}); delete it or change the request")
    return f


def require_done(f, path: Path, done: int, total: int, unit: str) -> None:
    """Close ``f`` and refuse it when only ``done`` of ``total`` items were simulated."""
    if done != total:
        f.close()
        raise ValueError(f"{path}: only {done} of {total} {unit} generated; run prepare_data to resume")
