"""The 145 Magpie composition attributes, computed on whole arrays.

Ward, Agrawal, Choudhary, Wolverton, "A general-purpose machine learning
framework for predicting properties of inorganic materials", npj Comput. Mater.
2, 16028 (2016). The 145 attributes are those matminer 0.10.1 computes with
``ElementProperty.from_preset("magpie")`` (132: 22 element properties x
minimum, maximum, range, mean, avg_dev, mode), ``Stoichiometry()`` (6 norms),
``ValenceOrbital(props=["frac"])`` (4) and ``IonProperty(fast=True)`` (3), in
that order and with matminer's labels (``MAGPIE_LABELS``).

Element data come from matminer itself (its bundled Magpie tables, and the
pymatgen electronegativities and common oxidation states that IonProperty
uses), read once. All per-composition work is NumPy over the whole batch,
including "compound possible": the charges of all combinations of one common
oxidation state per element are enumerated for all rows at once, as flat
arrays, and matched half against half (meet in the middle).

Differences from matminer, both only at the edge of a tolerance:
- matminer tests charge balance as ``|sum q_i a_i| <= 1e-8`` on the formula's
  amounts; here only fractions exist, and float32 fractions of an exactly
  balanced formula miss 1e-8 (Fe2O3: 3e-8), so the test is
  ``|sum q_i x_i| <= max(1e-8, 16 * machine epsilon of the input dtype)``
  (1.9e-6 for float32 input).
- the mode's tie test (``np.isclose`` with the largest weight) is applied to
  fractions rather than to the formula's amounts.
With matminer's default ``impute_nan=True`` none of the 86 elements has a
missing value; had a table a NaN, it would propagate as in matminer (NaN
minimum, maximum, range, mean, avg_dev and, when tied for the mode, mode).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from materials.elements import ELEMNET_ELEMENTS, N_ELEMENTS

MAGPIE_PROPERTIES: tuple[str, ...] = (
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row",
    "CovalentRadius", "Electronegativity", "NsValence", "NpValence", "NdValence",
    "NfValence", "NValence", "NsUnfilled", "NpUnfilled", "NdUnfilled",
    "NfUnfilled", "NUnfilled", "GSvolume_pa", "GSbandgap", "GSmagmom",
    "SpaceGroupNumber",
)
STATISTICS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
NORMS = (0, 2, 3, 5, 7, 10)
ORBITALS = ("s", "p", "d", "f")

MAGPIE_LABELS: tuple[str, ...] = (
    tuple(f"MagpieData {s} {p}" for p in MAGPIE_PROPERTIES for s in STATISTICS)
    + tuple(f"{p}-norm" for p in NORMS)
    + tuple(f"frac {o} valence electrons" for o in ORBITALS)
    + ("compound possible", "max ionic char", "avg ionic char")
)
#: bumped whenever ``magpie_features`` changes its output: cached attribute matrices carry it in their name
FEATURIZER_VERSION = 1
N_MAGPIE = len(MAGPIE_LABELS)
assert N_MAGPIE == 145

_VALENCE = [MAGPIE_PROPERTIES.index(f"N{o}Valence") for o in ORBITALS]
_TOTAL_VALENCE = MAGPIE_PROPERTIES.index("NValence")
_COMBOS_PER_PIECE = 2_000_000  # oxidation-state combinations held at once


@lru_cache(maxsize=1)
def magpie_element_table() -> np.ndarray:
    """(86, 22) float64: the Magpie properties of the 86 elements, read-only.

    Rows follow ``ELEMNET_ELEMENTS``, columns ``MAGPIE_PROPERTIES``; values are
    matminer's ``MagpieData(impute_nan=True)``, as ElementProperty sees them.
    """
    from matminer.utils.data import MagpieData
    from pymatgen.core import Element

    data = MagpieData(impute_nan=True)
    table = np.array(
        [[data.get_elemental_property(Element(e), p) for p in MAGPIE_PROPERTIES] for e in ELEMNET_ELEMENTS],
        dtype=np.float64,
    )
    table.flags.writeable = False
    return table


@lru_cache(maxsize=1)
def ionic_element_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What IonProperty uses, per element: (electronegativity (86,),
    oxidation states (86, k) padded with 0, number of states (86,)).

    Both come from matminer's ``PymatgenData`` (pymatgen's Pauling X and
    common oxidation states), IonProperty's default data source.
    """
    from matminer.utils.data import PymatgenData
    from pymatgen.core import Element

    data = PymatgenData(impute_nan=True)
    elements = [Element(e) for e in ELEMNET_ELEMENTS]
    electronegativity = np.array([data.get_elemental_property(e, "X") for e in elements], dtype=np.float64)
    lists = [tuple(data.get_oxidation_states(e)) for e in elements]
    n_states = np.array([len(s) for s in lists], dtype=np.int64)
    states = np.zeros((N_ELEMENTS, max(1, n_states.max())), dtype=np.float64)
    for i, s in enumerate(lists):
        states[i, : len(s)] = s
    for a in (electronegativity, states, n_states):
        a.flags.writeable = False
    return electronegativity, states, n_states


def magpie_features(fractions: np.ndarray, chunk_rows: int = 4096) -> np.ndarray:
    """(n, 86) element fractions -> (n, 145) float32 Magpie attributes.

    Columns follow ``MAGPIE_LABELS``; rows are renormalised to sum to 1, and
    the work is done in float64, ``chunk_rows`` rows at a time.
    """
    f = np.asarray(fractions)
    if f.ndim != 2 or f.shape[1] != N_ELEMENTS:
        raise ValueError(f"expected an (n, {N_ELEMENTS}) fraction matrix, got shape {f.shape}")
    dtype = f.dtype if np.issubdtype(f.dtype, np.floating) else np.dtype(np.float64)
    tol = max(1e-8, 16 * float(np.finfo(dtype).eps))
    out = np.empty((len(f), N_MAGPIE), dtype=np.float32)
    for start in range(0, len(f), chunk_rows):
        chunk = f[start : start + chunk_rows].astype(np.float64)
        if not np.isfinite(chunk).all() or (chunk < 0).any():
            raise ValueError("fractions must be finite and non-negative")
        if not (chunk > 0).any(axis=1).all():
            raise ValueError("every composition needs at least one element")
        out[start : start + chunk_rows] = _features(chunk, tol)
    return out


def _gather(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's present elements packed to the left: element index (n, m),
    weight (n, m, summing to 1) and a mask of real slots. Padding slots repeat
    the row's first element with weight 0, so they change no minimum, maximum
    or weighted sum."""
    present = f > 0
    count = present.sum(axis=1)
    rows, cols = np.nonzero(present)
    first = np.cumsum(count) - count
    slot = np.arange(rows.size) - np.repeat(first, count)
    shape = (len(f), int(count.max()))
    index = np.repeat(cols[first][:, None], shape[1], axis=1)
    weight, mask = np.zeros(shape), np.zeros(shape, bool)
    index[rows, slot], weight[rows, slot], mask[rows, slot] = cols, f[rows, cols], True
    return index, weight / weight.sum(axis=1, keepdims=True), mask


def _features(f: np.ndarray, tol: float) -> np.ndarray:
    index, w, mask = _gather(f)
    values = magpie_element_table()[index]  # (n, m, 22)

    # ElementProperty: six weighted statistics of each property.
    low, high = values.min(axis=1), values.max(axis=1)
    mean = np.einsum("nm,nmp->np", w, values)
    avg_dev = np.einsum("nm,nmp->np", w, np.abs(values - mean[:, None, :]))
    w_max = w.max(axis=1, keepdims=True)
    tied = mask & (np.abs(w - w_max) <= 1e-8 + 1e-5 * w_max)  # np.isclose(w, w.max())
    mode = np.where(tied[:, :, None], values, np.inf).min(axis=1)  # lowest tied value
    stats = np.stack([low, high, high - low, mean, avg_dev, mode], axis=2).reshape(len(f), -1)

    # Stoichiometry: number of elements, then p-norms of the fractions.
    norms = [mask.sum(axis=1).astype(np.float64)]
    norms += [(w**p).sum(axis=1) ** (1.0 / p) for p in NORMS[1:]]

    # ValenceOrbital "frac": mean s/p/d/f valence electrons over mean total.
    valence = mean[:, _VALENCE] / mean[:, [_TOTAL_VALENCE]]

    # IonProperty(fast=True).
    x = ionic_element_table()[0][index]
    max_ionic = 1.0 - np.exp(-0.25 * (x.max(axis=1) - x.min(axis=1)) ** 2)  # the widest pair
    pair = 1.0 - np.exp(-0.25 * (x[:, :, None] - x[:, None, :]) ** 2)
    avg_ionic = 0.5 * np.einsum("ni,nij,nj->n", w, pair, w)  # each pair once
    possible = _charge_balance_possible(index, w, mask, tol).astype(np.float64)

    return np.column_stack([stats, *norms, valence, possible, max_ionic, avg_ionic])


def _charge_balance_possible(index: np.ndarray, w: np.ndarray, mask: np.ndarray, tol: float) -> np.ndarray:
    """IonProperty(fast=True)'s "compound possible", for all rows at once.

    True when some choice of one common oxidation state per element makes the
    charge ``sum q_i x_i`` zero within ``tol``, or when the row has one element.
    Meet in the middle: a row's elements are dealt into two halves; the
    charges of all state choices of one half are sorted, and each charge of
    the other half looks for its negative there, so a row costs about the
    square root of its number of combinations (a few for most compositions;
    ~3e7 and about a minute for a row holding all 86 elements, which matminer
    would enumerate one by one). Rows go in pieces of about
    ``_COMBOS_PER_PIECE`` charges.
    """
    _, states, n_states = ionic_element_table()
    counts = np.where(mask, n_states[index], 1)
    # Deal the elements, most states first, alternately into the two halves.
    order = np.argsort(-counts, axis=1, kind="stable")
    index, w, counts = (np.take_along_axis(a, order, axis=1) for a in (index, w, counts))
    one, two = slice(0, None, 2), slice(1, None, 2)
    work = counts[:, one].prod(axis=1) + counts[:, two].prod(axis=1)
    ends = np.cumsum(work)
    possible = mask.sum(axis=1) == 1
    spread = 4.0 * np.abs(states).max() + 1.0
    lo = 0
    while lo < len(index):
        start = ends[lo] - work[lo]
        hi = max(lo + 1, int(np.searchsorted(ends, start + _COMBOS_PER_PIECE, side="right")))
        row_a, a = _charges(index[lo:hi, one], w[lo:hi, one], counts[lo:hi, one])
        row_b, b = _charges(index[lo:hi, two], w[lo:hi, two], counts[lo:hi, two])
        # A half's charge lies within +-max|q|, so shifting row r by r * spread
        # keeps the rows apart in one sorted array.
        keys = np.concatenate([[-np.inf], np.sort(a + spread * row_a), [np.inf]])
        wanted = spread * row_b - b
        pos = np.searchsorted(keys, wanted)  # keys[pos - 1] < wanted <= keys[pos]
        gap = np.minimum(keys[pos] - wanted, wanted - keys[pos - 1])
        possible[lo:hi] |= np.bincount(row_b[gap <= tol], minlength=hi - lo) > 0
        lo = hi
    return possible


def _charges(index: np.ndarray, w: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row's charges ``sum q_j x_j`` over all choices of states, flat:
    row r owns prod(counts[r]) consecutive entries, read as a mixed-radix
    number whose digit j picks the state of element j. Returns (row, charge)."""
    states = ionic_element_table()[1]
    combos = counts.prod(axis=1)
    strides = np.cumprod(counts, axis=1) // np.maximum(counts, 1)
    row = np.repeat(np.arange(len(index)), combos)
    k = np.arange(row.size) - np.repeat(np.cumsum(combos) - combos, combos)
    charge = np.zeros(row.size)
    for j in range(index.shape[1]):
        choice = (k // strides[row, j]) % counts[row, j]
        charge += states[index[row, j], choice] * w[row, j]
    return row, charge
