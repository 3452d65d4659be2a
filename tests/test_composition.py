"""materials.composition: fraction vectors equal pymatgen's, bad formulas are named."""

import numpy as np
import pytest
from pymatgen.core import Composition

from materials.composition import CompositionError, composition_keys, parse_compositions
from materials.elements import ELEMENT_INDEX, ELEMNET_ELEMENTS

FORMULAS = ["NaCl", "Fe2O3", "Ta2Te1Zr1", "Fe0.7Ni0.3", "Li7La3Zr2O12", "H2O", "PuO2", "XeF4",
            "Ba(NO3)2", "Ca5(PO4)3F", "U0.5Np0.25Pu0.25", "KrF2", "TcO2", "Cs2AgBiBr6"]


def test_86_elements_without_noble_gases_po_at_rn_fr_ra():
    assert len(ELEMNET_ELEMENTS) == 86 and ELEMNET_ELEMENTS[0] == "H" and ELEMNET_ELEMENTS[-1] == "Pu"
    for absent in ("He", "Ne", "Ar", "Po", "At", "Rn", "Fr", "Ra"):
        assert absent not in ELEMENT_INDEX


def test_fractions_equal_pymatgen():
    parsed = parse_compositions(FORMULAS)
    assert parsed.fractions.shape == (len(FORMULAS), 86) and parsed.ok.all()
    for row, formula in zip(parsed.fractions, FORMULAS):
        comp = Composition(formula)
        expected = np.zeros(86)
        for el in comp.elements:
            expected[ELEMENT_INDEX[el.symbol]] = comp.get_atomic_fraction(el)
        np.testing.assert_allclose(row, expected, rtol=1e-6, atol=1e-7, err_msg=formula)
        assert abs(row.sum() - 1) < 1e-5


def test_same_reduced_composition_same_key():
    parsed = parse_compositions(["NaCl", "Na2Cl2", "Fe2O3", "Fe4O6", "FeO"])
    keys = composition_keys(parsed.fractions)
    assert keys[0] == keys[1] and keys[2] == keys[3] and len(set(keys)) == 3


@pytest.mark.parametrize("formula,reason", [
    ("Xx2O3", "unknown element Xx"), ("Fe2O3)", "malformed formula"), ("HeO", "not one of ElemNet's 86"), ("", "empty"),
    ("Fe-2O", "malformed"), ("Na0Cl", "amount 0 of Na is not positive"), ("Ba(NO3)0", "amount 0 of a group"),
])
def test_bad_formula_names_source_row_value(formula, reason):
    with pytest.raises(CompositionError) as err:
        parse_compositions(["NaCl", formula], source="my.csv", first_row=2)
    message = str(err.value)
    assert "my.csv" in message and "row 3" in message and repr(formula) in message and reason in message


def test_skip_bad_counts_rows():
    parsed = parse_compositions(["NaCl", "Qq", "HeO", "FeO"], skip_bad=True, first_row=2)
    assert parsed.ok.tolist() == [True, False, False, True]
    assert [p[0] for p in parsed.problems] == [3, 4]
