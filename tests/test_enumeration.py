"""The screening space (diss. 3.3.9): every distinct composition once, counted exactly."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from materials.enumeration import (
    chunk_combinations, chunk_size, chunks, count_compositions, element_ids, formula, ratio_patterns,
)


def brute_force(n_elements: int, max_arity: int, max_sum: int) -> set:
    """Every integer amount vector (sum <= max_sum, 2..max_arity elements) reduced to its fractions."""
    found = set()
    for amounts in itertools.product(range(max_sum + 1), repeat=n_elements):
        total, nonzero = sum(amounts), sum(a > 0 for a in amounts)
        if 2 <= nonzero <= max_arity and total <= max_sum:
            found.add(tuple(Fraction(a, total) for a in amounts))
    return found


def enumerated(n_elements: int, max_arity: int, max_sum: int) -> list:
    out = []
    for chunk in chunks(n_elements, max_arity):
        for combo in chunk_combinations(chunk, n_elements):
            for pattern in ratio_patterns(chunk.arity, max_sum):
                v = [Fraction(0)] * n_elements
                for e, a in zip(combo, pattern):
                    v[e] = Fraction(int(a), int(pattern.sum()))
                out.append(tuple(v))
    return out


@pytest.mark.parametrize("n,arity,max_sum", [(5, 4, 7), (6, 3, 6), (4, 2, 10)])
def test_enumeration_is_exactly_the_brute_force_set(n, arity, max_sum):
    mine = enumerated(n, arity, max_sum)
    assert len(mine) == len(set(mine)), "a composition was produced twice"
    assert set(mine) == brute_force(n, arity, max_sum)
    assert sum(count_compositions(n, arity, max_sum).values()) == len(mine)
    assert sum(chunk_size(c, n, max_sum) for c in chunks(n, arity)) == len(mine)


def test_paper_count_is_computed_exactly():
    counts = count_compositions(86, 4, 10)
    assert counts == {2: math.comb(86, 2) * 31, 3: math.comb(86, 3) * 109, 4: math.comb(86, 4) * 205}
    assert sum(counts.values()) == 446_597_140  # the dissertation: "about 450M"


def test_chunks_are_stable_and_never_empty():
    first, second = list(chunks(12, 4)), list(chunks(12, 4))
    assert first == second and [c.index for c in first] == list(range(len(first)))
    assert all(len(chunk_combinations(c, 12)) > 0 for c in first)


def test_elements_by_name_and_unknown_named():
    assert list(element_ids("O,Ti")) == sorted(list(element_ids("Ti-O")))
    assert len(element_ids("")) == 86
    with pytest.raises(ValueError, match=r"unknown element\(s\) \['Xx'\]"):
        element_ids("Fe,Xx")
    with pytest.raises(ValueError, match="twice"):
        element_ids("Fe,Fe")


def test_formula_reads_like_the_paper():
    assert formula(["F", "Na", "Y"], np.array([7, 1, 2])) == "NaY2F7"
    assert formula(["O", "Cu"], [1, 2]) == "Cu2O"
