"""Chemical formulas to element-fraction vectors (ElemNet's input, diss. 3.2.1).

Formulas are parsed by pymatgen's ``Composition``; each distinct formula string
is parsed once, then whole arrays are built with NumPy. A bad formula is
reported with the file, the row and the value, or, when the caller asks to
skip bad rows, counted with its reason.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from materials.elements import ELEMENT_INDEX, N_ELEMENTS


# an amount written in a formula (after an element or a group's ``)``): pymatgen silently drops a zero one
_AMOUNT = re.compile(r"([A-Z][a-z]*|\))\s*(-?\d*\.?\d+(?:[eE][-+]?\d+)?)")


class CompositionError(ValueError):
    """A formula that cannot become an element-fraction vector."""

    def __init__(self, source: str, row: int, value: object, reason: str):
        self.source, self.row, self.value, self.reason = source, row, value, reason
        super().__init__(f"{source}, row {row}: {reason}: {value!r}")


@dataclass
class ParsedCompositions:
    """Element fractions of the rows that parsed, and what happened to the rest.

    ``fractions`` is (n_ok, 86) float32, rows summing to 1; ``ok`` marks, for
    every input row, whether it is among them; ``problems`` lists
    ``(row, value, reason)`` for the rows that are not.
    """

    fractions: np.ndarray
    ok: np.ndarray
    problems: list[tuple[int, object, str]] = field(default_factory=list)

    @property
    def n_elements(self) -> np.ndarray:
        """How many elements each parsed composition has."""
        return (self.fractions > 0).sum(axis=1)


def _amounts(formula: object) -> dict[str, float]:
    """Element amounts of one formula; raises ValueError with the reason."""
    if not isinstance(formula, str) or not formula.strip():
        raise ValueError("empty or non-text formula")
    for symbol, amount in _AMOUNT.findall(formula):  # ``Na0Cl`` would otherwise be read as ``Cl``
        if float(amount) <= 0:
            raise ValueError(f"malformed formula (amount {amount} of {symbol.replace(')', 'a group')} is not positive)")
    from pymatgen.core import Composition, Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            comp = Composition(formula.strip())
        except Exception as exc:  # pymatgen raises several types for bad input
            raise ValueError(f"malformed formula ({exc})") from None
    amounts: dict[str, float] = {}
    for el, amount in comp.get_el_amt_dict().items():
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"bad amount {amount} of {el}")
        if amount == 0:
            continue
        if el not in ELEMENT_INDEX and not Element.is_valid_symbol(el):
            raise ValueError(f"unknown element {el}")
        if el not in ELEMENT_INDEX:
            raise ValueError(f"element {el} is not one of ElemNet's 86 input elements")
        amounts[el] = amounts.get(el, 0.0) + amount
    if not amounts:
        raise ValueError("formula has no elements")
    return amounts


def parse_compositions(
    formulas, source: str = "<input>", first_row: int = 2, skip_bad: bool = False, rows=None
) -> ParsedCompositions:
    """Parse formulas into an (n, 86) fraction matrix.

    Messages name the file row a user sees in an editor: ``rows[i]`` when given
    (rows of a file with gaps), else ``first_row + i`` (2 below a CSV header).
    """
    formulas = list(formulas)
    row_of = (lambda i: int(rows[i])) if rows is not None else (lambda i: first_row + int(i))
    uniques: dict[object, int] = {}
    codes = np.empty(len(formulas), dtype=np.int64)
    for i, f in enumerate(formulas):
        key = f if isinstance(f, str) else repr(f)
        codes[i] = uniques.setdefault(key, len(uniques))
    table = np.zeros((len(uniques), N_ELEMENTS), dtype=np.float64)
    reasons: dict[int, str] = {}
    for key, code in uniques.items():
        try:
            amounts = _amounts(key if isinstance(key, str) else None)
        except ValueError as exc:
            reasons[code] = str(exc)
            continue
        for el, amount in amounts.items():
            table[code, ELEMENT_INDEX[el]] = amount
    table /= np.maximum(table.sum(axis=1, keepdims=True), 1e-300)
    bad_code = np.zeros(len(uniques), dtype=bool)
    bad_code[list(reasons)] = True
    ok = ~bad_code[codes]
    problems = [(row_of(i), formulas[i], reasons[codes[i]]) for i in np.flatnonzero(~ok)]
    if problems and not skip_bad:
        row, value, reason = problems[0]
        more = f" (and {len(problems) - 1} more bad rows; skip_bad_rows counts them)" if len(problems) > 1 else ""
        raise CompositionError(source, row, value, reason + more)
    return ParsedCompositions(table[codes[ok]].astype(np.float32), ok, problems)


def composition_keys(fractions: np.ndarray, decimals: int = 6) -> np.ndarray:
    """One integer per distinct reduced composition (rows equal to ``decimals``).

    Two formulas of the same reduced composition (``AB`` and ``A2B2``) get the
    same key; used to deduplicate before splitting.
    """
    rounded = np.round(np.asarray(fractions, dtype=np.float64), decimals)
    rounded = np.ascontiguousarray(rounded)
    void = rounded.view(np.dtype((np.void, rounded.dtype.itemsize * rounded.shape[1])))
    _, inverse = np.unique(void.ravel(), return_inverse=True)
    return inverse.ravel()


def formula_from_fractions(fractions: np.ndarray, decimals: int = 4) -> list[str]:
    """Readable formulas (element symbols with fractions) for fraction rows."""
    from materials.elements import ELEMNET_ELEMENTS

    out = []
    for row in np.atleast_2d(fractions):
        idx = np.flatnonzero(row > 0)
        out.append("".join(f"{ELEMNET_ELEMENTS[i]}{round(float(row[i]), decimals):g}" for i in idx))
    return out
