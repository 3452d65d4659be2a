"""Read composition-property tables from files, with errors a person can act on.

Formats: CSV with a formula and a target column (the CrabNet/matbench files and
any user file), SSUB's ``formula value`` lines, and JARVIS-DFT ``dft_3d`` JSON
(a list of records with ``formula`` or ``atoms`` and a property such as
``formation_energy_peratom``). Every error names the file, the row and the
value; with ``skip_bad=True`` bad rows are counted instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DataFileError(ValueError):
    """A data file, or one of its rows, that cannot be used."""


class SettingError(ValueError):
    """A setting (a config value or an option) that cannot work with the data, said in one line."""


@dataclass
class RawTable:
    """Formulas and targets as read, with the file row of each."""

    source: str
    formulas: list[str]
    targets: np.ndarray
    rows: np.ndarray
    problems: list[tuple[int, object, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.formulas)


def _target_value(source: str, row: int, value: object, skip_bad: bool, problems: list) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
        reason = "target is not a number"
    else:
        reason = "target is NaN or infinite"
    if math.isfinite(number):
        return number
    if not skip_bad:
        raise DataFileError(f"{source}, row {row}: {reason}: {value!r}")
    problems.append((row, value, reason))
    return None


UTF8_BOM = b"\xef\xbb\xbf"


def _sniff(path: Path) -> bytes:
    """The file's first bytes, after a UTF-8 byte-order mark (Excel's "CSV UTF-8" writes one)."""
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    head = path.read_bytes()[:4096].removeprefix(UTF8_BOM)
    if not head.strip():
        raise DataFileError(f"{path}: the file is empty")
    if b"\x00" in head or head[:2] == b"\x1f\x8b" or head[:4] == b"PK\x03\x04":
        raise DataFileError(f"{path}: this is a binary file (compressed or not text), not {path.suffix or 'text'}")
    return head


def _read_text(path: Path) -> str:
    """The whole file as text, line ends as written: UTF-8, with or without a byte-order mark."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        row = err.object[:err.start].count(b"\n") + 1
        raise DataFileError(f"{path}, row {row}: not UTF-8 text (byte {err.object[err.start:err.start + 1]!r}); "
                            "save the file as UTF-8 (Excel: 'CSV UTF-8')") from None


def read_csv(path, formula_column: str = "formula", target_column: str = "target",
             skip_bad: bool = False) -> RawTable:
    """A CSV with a header; rows are numbered as an editor shows them (header = 1).

    UTF-8 with or without a byte-order mark; LF, CRLF or CR line ends.
    """
    import csv
    import io

    path = Path(path)
    head = _sniff(path)
    if head.lstrip()[:1] in (b"[", b"{"):
        raise DataFileError(f"{path}: this looks like JSON, not CSV; use a .json file name for JARVIS-style data")
    with io.StringIO(_read_text(path), newline="") as fh:  # newline="": csv splits LF, CRLF and CR itself
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataFileError(f"{path}: the file has no header row")
        header = [h.strip() for h in header]
        missing = [c for c in (formula_column, target_column) if c not in header]
        if missing:
            raise DataFileError(f"{path}, row 1: missing column(s) {missing}; the header is {header}")
        fi, ti = header.index(formula_column), header.index(target_column)
        formulas, targets, rows, problems = [], [], [], []
        for row_number, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) <= max(fi, ti):
                message = f"row has {len(fields)} fields, the header has {len(header)}"
                if not skip_bad:
                    raise DataFileError(f"{path}, row {row_number}: {message}: {','.join(fields)!r}")
                problems.append((row_number, ",".join(fields), message))
                continue
            value = _target_value(str(path), row_number, fields[ti].strip(), skip_bad, problems)
            if value is None:
                continue
            formulas.append(fields[fi].strip())
            targets.append(value)
            rows.append(row_number)
    if not formulas and not problems:
        raise DataFileError(f"{path}: the file has a header but no data rows")
    return RawTable(str(path), formulas, np.asarray(targets, dtype=np.float64), np.asarray(rows), problems)


def read_ssub(path, skip_bad: bool = False) -> RawTable:
    """SSUB's ``formula value`` lines (eV/atom), as shipped in qmpy."""
    path = Path(path)
    _sniff(path)
    formulas, targets, rows, problems = [], [], [], []
    for row_number, line in enumerate(_read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            if not skip_bad:
                raise DataFileError(f"{path}, row {row_number}: expected 'formula value': {line!r}")
            problems.append((row_number, line, "expected 'formula value'"))
            continue
        value = _target_value(str(path), row_number, parts[1], skip_bad, problems)
        if value is not None:
            formulas.append(parts[0])
            targets.append(value)
            rows.append(row_number)
    return RawTable(str(path), formulas, np.asarray(targets, dtype=np.float64), np.asarray(rows), problems)


def _jarvis_formula(record: dict) -> str | None:
    if isinstance(record.get("formula"), str):
        return record["formula"]
    atoms = record.get("atoms")
    if isinstance(atoms, dict) and isinstance(atoms.get("elements"), list):
        from collections import Counter

        counts = Counter(atoms["elements"])
        return "".join(f"{el}{n}" for el, n in counts.items())
    return None


def read_jarvis_json(path, target_column: str = "formation_energy_peratom",
                     skip_bad: bool = False) -> RawTable:
    """JARVIS-DFT ``dft_3d`` records (a JSON list); rows are 1-based record numbers.

    JARVIS writes missing values as the string ``"na"``; such rows are bad rows.
    """
    path = Path(path)
    _sniff(path)
    try:
        records = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(records, list):
        raise DataFileError(f"{path}: expected a JSON list of dft_3d records, found {type(records).__name__}")
    formulas, targets, rows, problems = [], [], [], []
    for row_number, record in enumerate(records, start=1):
        formula = _jarvis_formula(record) if isinstance(record, dict) else None
        if formula is None or not isinstance(record, dict) or target_column not in record:
            reason = f"record lacks 'formula'/'atoms' or {target_column!r}"
            if not skip_bad:
                raise DataFileError(f"{path}, row {row_number}: {reason}: {str(record)[:200]!r}")
            problems.append((row_number, str(record)[:200], reason))
            continue
        value = _target_value(str(path), row_number, record[target_column], skip_bad, problems)
        if value is not None:
            formulas.append(formula)
            targets.append(value)
            rows.append(row_number)
    return RawTable(str(path), formulas, np.asarray(targets, dtype=np.float64), np.asarray(rows), problems)


def read_table(path, formula_column: str = "formula", target_column: str = "target",
               skip_bad: bool = False) -> RawTable:
    """Pick the reader by file name: ``.json`` JARVIS, ``.dat`` SSUB, else CSV."""
    path = Path(path)
    if path.suffix == ".json":
        target = "formation_energy_peratom" if target_column == "target" else target_column
        return read_jarvis_json(path, target, skip_bad)
    if path.suffix == ".dat":
        return read_ssub(path, skip_bad)
    return read_csv(path, formula_column, target_column, skip_bad)
