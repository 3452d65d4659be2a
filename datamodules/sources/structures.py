"""Read crystal structures with a target, with errors a person can act on.

Formats:

- CSV with a ``structure`` column: a pymatgen ``Structure`` dict written as a
  Python literal (matminer 0.3.9's ``flla_2015.csv`` and friends, read with
  ``ast.literal_eval``, never ``eval``), JSON text of the same dict, or CIF
  text. A first line starting with ``#`` (matminer's reference line) is skipped.
- a folder of CIF files with one CSV beside them (``targets.csv``, or the only
  CSV): an ``id`` column naming each CIF's file stem and the target column.
- JSON: a matbench-style table (``{"columns": [...], "index": [...],
  "data": [[structure, target], ...]}``), or a list of records holding a
  ``structure`` dict or JARVIS ``atoms`` (``lattice_mat``, ``coords``,
  ``elements``, ``cartesian``) and the target.

Every error names the file, the row and the value; with ``skip_bad=True`` bad
rows are counted instead. Partial occupancies (disordered sites) are refused:
a crystal graph needs one element per site.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodules.sources.readers import DataFileError


@dataclass
class StructureTable:
    """Structures and targets as read, with an id and the file row of each."""

    source: str
    ids: list[str]
    structures: list  # pymatgen Structure
    targets: np.ndarray
    rows: np.ndarray
    problems: list[tuple[int, object, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.structures)


def _excerpt(value: object, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def structure_from(value: object):
    """A pymatgen Structure from a dict, a dict literal or JSON, CIF text, or JARVIS ``atoms``."""
    from pymatgen.core import Lattice, Structure

    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = ast.literal_eval(text)  # a Python literal: no names, no calls
        elif "_cell_length_a" in text:
            return Structure.from_str(text, fmt="cif")
        else:
            raise ValueError("neither a structure dict nor CIF text")
    if not isinstance(value, dict):
        raise ValueError(f"a {type(value).__name__} is not a structure")
    if "lattice_mat" in value:  # JARVIS atoms
        return Structure(Lattice(value["lattice_mat"]), value["elements"], value["coords"],
                         coords_are_cartesian=bool(value.get("cartesian", False)))
    return Structure.from_dict(value)


def check_ordered(structure) -> None:
    """Refuse partial occupancies, naming the first disordered site."""
    for i, site in enumerate(structure):
        if not site.is_ordered:
            occupancy = ", ".join(f"{sp}:{occ:g}" for sp, occ in site.species.items())
            raise ValueError(f"site {i} is disordered ({occupancy}): partial occupancies are not supported")


class _Collector:
    def __init__(self, source: str, skip_bad: bool):
        self.source, self.skip_bad = source, skip_bad
        self.ids, self.structures, self.targets, self.rows = [], [], [], []
        self.problems: list[tuple[int, object, str]] = []

    def add(self, row: int, ident: str, raw_structure: object, raw_target: object) -> None:
        try:
            target = float(raw_target)
        except (TypeError, ValueError):
            return self._bad(row, raw_target, "target is not a number")
        if not math.isfinite(target):
            return self._bad(row, raw_target, "target is NaN or infinite")
        try:
            structure = structure_from(raw_structure)
            check_ordered(structure)
        except Exception as err:  # noqa: BLE001 - any parse failure becomes a row error
            return self._bad(row, raw_structure, f"structure {ident!r} cannot be used: {err}")
        self.ids.append(ident)
        self.structures.append(structure)
        self.targets.append(target)
        self.rows.append(row)

    def _bad(self, row: int, value: object, reason: str) -> None:
        if not self.skip_bad:
            raise DataFileError(f"{self.source}, row {row}: {reason}: {_excerpt(value)}")
        self.problems.append((row, _excerpt(value), reason))

    def table(self) -> StructureTable:
        if not self.structures:
            raise DataFileError(f"{self.source}: no usable structure rows ({len(self.problems)} bad)")
        return StructureTable(self.source, self.ids, self.structures, np.asarray(self.targets, dtype=np.float64),
                              np.asarray(self.rows, dtype=np.int64), self.problems)


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]], int]:
    """Header, data rows and the file row of the first data row (a leading ``#`` line skipped)."""
    csv.field_size_limit(sys.maxsize)  # one structure literal is longer than csv's default field limit
    with open(path, newline="") as fh:
        lines = list(csv.reader(fh))
    first = 1
    while lines and (not lines[0] or lines[0][0].startswith("#")):
        lines, first = lines[1:], first + 1
    if not lines:
        raise DataFileError(f"{path}: the file is empty")
    if len(lines) < 2:
        raise DataFileError(f"{path}: no data rows below the header")
    header, rows = lines[0], lines[1:]
    if all(len(r) == len(header) + 1 for r in rows):  # pandas' unnamed index column (matminer's dielectric file)
        rows = [r[1:] for r in rows]
    return header, rows, first + 1


def _column(path: Path, header: list[str], name: str, first_row: int) -> int:
    if name not in header:
        raise DataFileError(f"{path}, row {first_row - 1}: missing column {name!r} (columns: {', '.join(header)})")
    return header.index(name)


def _read_csv(path: Path, target_column: str, id_column: str, out: _Collector, cif_folder: Path | None = None) -> None:
    header, rows, first = _csv_rows(path)
    t = _column(path, header, target_column, first)
    if cif_folder is not None and id_column not in header and "id" in header:
        id_column = "id"
    i = header.index(id_column) if id_column in header else None
    if cif_folder is not None:
        if i is None:
            raise DataFileError(f"{path}, row {first - 1}: missing column {id_column!r} naming each CIF's file stem")
        s = None
    else:
        s = _column(path, header, "structure", first)
    for n, fields in enumerate(rows):
        row = first + n
        if len(fields) != len(header):
            out._bad(row, fields[:3], f"{len(fields)} fields where the header has {len(header)}")
            continue
        ident = fields[i] if i is not None else str(row)
        if cif_folder is None:
            out.add(row, ident, fields[s], fields[t])
            continue
        cif = cif_folder / f"{ident}.cif"
        if not cif.exists():
            out._bad(row, ident, f"no CIF file {cif}")
            continue
        out.add(row, ident, cif.read_text(), fields[t])


def _read_json(path: Path, target_column: str, id_column: str, out: _Collector) -> None:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataFileError(f"{path}: not valid JSON ({err})") from None
    if isinstance(doc, dict) and {"columns", "data"} <= set(doc):  # matbench (pandas "split" orient)
        columns = list(doc["columns"])
        for name in ("structure", target_column):
            if name not in columns:
                raise DataFileError(f"{path}: missing column {name!r} (columns: {', '.join(columns)})")
        s, t = columns.index("structure"), columns.index(target_column)
        index = doc.get("index") or list(range(len(doc["data"])))
        for n, (ident, values) in enumerate(zip(index, doc["data"])):
            out.add(n + 1, str(ident), values[s], values[t])
        return
    if not isinstance(doc, list):
        raise DataFileError(f"{path}: expected a matbench table or a list of records, found {type(doc).__name__}")
    for n, record in enumerate(doc):
        row = n + 1
        if not isinstance(record, dict):
            out._bad(row, record, "a record is not an object")
            continue
        raw = record.get("structure", record.get("atoms"))
        if raw is None or target_column not in record:
            out._bad(row, sorted(record)[:8], f"a record needs 'structure' (or 'atoms') and {target_column!r}")
            continue
        ident = str(record.get(id_column, record.get("jid", row)))
        out.add(row, ident, raw, record[target_column])


def read_structures(path: str | Path, target_column: str, id_column: str = "material_id",
                    skip_bad: bool = False) -> StructureTable:
    """Structures and a target from a CSV, a folder of CIFs with a CSV, or a JSON file."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file or folder")
    out = _Collector(str(path), skip_bad)
    if path.is_dir():
        tables = sorted(path.glob("*.csv"))
        table = path / "targets.csv" if (path / "targets.csv").exists() else (tables[0] if len(tables) == 1 else None)
        if table is None:
            raise DataFileError(f"{path}: a CIF folder needs targets.csv (or exactly one CSV) with "
                                f"{id_column!r} and {target_column!r} columns; found {[t.name for t in tables]}")
        out.source = str(table)
        _read_csv(table, target_column, id_column, out, cif_folder=path)
    elif path.suffix.lower() == ".json":
        _read_json(path, target_column, id_column, out)
    else:
        _read_csv(path, target_column, id_column, out)
    return out.table()
