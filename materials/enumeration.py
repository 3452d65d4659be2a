"""Hypothetical compositions A_w B_x C_y D_z for combinatorial screening (diss. 3.3.9).

The paper's space: "any of the 86 elements in the OQMD besides He, Ne and
Ar", which is exactly ElemNet's 86-element input table (it has no He, Ne,
Ar), positive integers w..z with w+x+y+z <= 10, one entry per distinct ratio
(AB and A2B2 are one composition). A composition is an element *combination* (a chemical system)
and a ratio *pattern* (a tuple of coprime positive integers in the order of
the combination), so each composition is produced exactly once.

Nothing is listed whole: ``chunks`` yields the space as small deterministic
pieces (an arity and the first arity-2 elements of the combination), and
``chunk_combinations`` expands one piece. Chunk numbers are stable, so a
screen resumes after the last finished chunk.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from materials.elements import ELEMENT_INDEX, ELEMNET_ELEMENTS

SCREEN_ELEMENTS: tuple[str, ...] = ELEMNET_ELEMENTS


def ratio_patterns(arity: int, max_sum: int) -> np.ndarray:
    """Every tuple of ``arity`` positive integers with sum <= max_sum and gcd 1, lexicographic."""
    return _ratio_patterns(arity, max_sum).copy()


@lru_cache(maxsize=None)
def _ratio_patterns(arity: int, max_sum: int) -> np.ndarray:
    if arity < 1:
        raise ValueError(f"arity must be at least 1, got {arity}")
    rows = [t for t in itertools.product(range(1, max_sum + 1), repeat=arity)
            if sum(t) <= max_sum and math.gcd(*t) == 1]
    return np.array(rows, dtype=np.int64).reshape(-1, arity)


def count_compositions(n_elements: int, max_arity: int, max_sum: int, min_arity: int = 2) -> dict[int, int]:
    """Exact number of distinct compositions per arity: C(n, k) x patterns(k)."""
    return {k: math.comb(n_elements, k) * len(ratio_patterns(k, max_sum))
            for k in range(min_arity, max_arity + 1)}


def element_ids(elements: str | list[str] | None) -> np.ndarray:
    """Column indices (in the ElemNet table) of the elements to screen; all when None/empty."""
    if elements is None or (isinstance(elements, str) and not elements.strip()) or elements == []:
        symbols = list(SCREEN_ELEMENTS)
    elif isinstance(elements, str):
        symbols = [s.strip() for s in elements.replace("-", ",").split(",") if s.strip()]
    else:
        symbols = list(elements)
    unknown = [s for s in symbols if s not in ELEMENT_INDEX]
    if unknown:
        raise ValueError(f"ELEMENTS: unknown element(s) {unknown}; the screen knows {', '.join(SCREEN_ELEMENTS)}")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"ELEMENTS: {symbols} names an element twice")
    return np.array(sorted(ELEMENT_INDEX[s] for s in symbols), dtype=np.int64)


@dataclass(frozen=True)
class Chunk:
    """One piece of the space: every combination of ``arity`` elements starting with ``prefix``."""

    index: int
    arity: int
    prefix: tuple[int, ...]  # positions in the screened element list, arity-2 of them


def chunks(n_elements: int, max_arity: int, min_arity: int = 2) -> Iterator[Chunk]:
    """The chunks in a fixed order: by arity, then by prefix (lexicographic)."""
    index = 0
    for k in range(min_arity, max_arity + 1):
        if k > n_elements:
            break
        for prefix in itertools.combinations(range(n_elements), max(k - 2, 0)):
            last = prefix[-1] if prefix else -1
            if k >= 2 and n_elements - last - 1 < 2:
                continue  # no pair left after this prefix
            yield Chunk(index, k, prefix)
            index += 1


def chunk_combinations(chunk: Chunk, n_elements: int) -> np.ndarray:
    """(m, arity) positions of the chunk's element combinations, increasing along rows."""
    if chunk.arity == 1:
        return np.arange(n_elements, dtype=np.int64)[:, None]
    start = chunk.prefix[-1] + 1 if chunk.prefix else 0
    a, b = np.triu_indices(n_elements - start, k=1)
    pairs = np.stack([a + start, b + start], axis=1)
    prefix = np.broadcast_to(np.array(chunk.prefix, dtype=np.int64), (len(pairs), len(chunk.prefix)))
    return np.concatenate([prefix, pairs], axis=1)


def chunk_size(chunk: Chunk, n_elements: int, max_sum: int) -> int:
    """Compositions in a chunk (combinations x ratio patterns)."""
    start = chunk.prefix[-1] + 1 if chunk.prefix else 0
    m = n_elements if chunk.arity == 1 else math.comb(n_elements - start, 2)
    return m * len(ratio_patterns(chunk.arity, max_sum))


@lru_cache(maxsize=None)
def _electronegativity(symbol: str) -> float:
    from pymatgen.core import Element

    return Element(symbol).X


def formula(symbols: list[str] | tuple[str, ...], amounts) -> str:
    """``NaY2F7`` from symbols and integer amounts: ordered by electronegativity as pymatgen
    writes formulas, amount 1 left out."""
    pairs = sorted(zip(symbols, amounts), key=lambda p: (_electronegativity(p[0]), p[0]))
    return "".join(s if int(n) == 1 else f"{s}{int(n)}" for s, n in pairs)
