"""materials.magpie against matminer 0.10.1, formula by formula."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from materials.composition import parse_compositions
from materials.elements import ELEMNET_ELEMENTS
from materials.magpie import MAGPIE_LABELS, magpie_element_table, magpie_features

FIXED = [
    # elements, binaries, oxides and halides (charge balance holds or fails)
    "Fe", "Xe", "Kr", "Pu", "Tc", "Pm", "O", "C",
    "NaCl", "MgO", "Al2O3", "Fe2O3", "Fe3O4", "FeO", "SiO2", "TiO2", "ZrO2",
    "CaTiO3", "SrTiO3", "BaTiO3", "LiCoO2", "LiFePO4", "Li7La3Zr2O12", "YBa2Cu3O7",
    "La2CuO4", "MgAl2O4", "Cr2O3", "MnO2", "Mn3O4", "CeO2", "Ce2O3", "UO2", "PuO2",
    "ThO2", "NpO2", "TcO2", "Tc2O7", "Pm2O3", "Sm2O3", "Eu2O3", "XeF2", "XeF4",
    "XeO3", "KrF2", "CsXeF7", "NaXeO4", "GaN", "GaAs", "InP", "CdTe", "ZnS", "CsPbI3",
    "K2SO4", "CaCO3", "NH4Cl", "H2O", "CH4", "Na2B4O7", "Bi2Te3", "PbTe", "SnSe",
    # intermetallics and alloys, fractional formulas
    "Fe0.7Ni0.3", "Cu0.5Zn0.5", "Ni3Al", "TiAl", "Nb3Sn", "MgB2", "LaNi5", "SmCo5",
    "Nd2Fe14B", "AlCoCrFeNi", "CoCrFeMnNi", "Ti0.33Zr0.33Hf0.34", "Pt0.1Pd0.9",
    "Fe0.8B0.1Si0.1", "U0.5Pu0.5", "PuGa3", "TcRe", "PmNi5", "Xe0.2Kr0.8",
    "Au0.25Ag0.25Cu0.5", "Ac2Th", "PaU", "W0.9Re0.1", "Mo0.5Nb0.25Ta0.25",
    "Fe0.333333Ni0.333334Co0.333333",  # a near tie that np.isclose calls a tie (mode)
    "C1Cl2I1S3Se1N2", "Mn2C1Cl3S1P2Fe1", "Cl0.5I0.25Br2Mn1Xe0.5Tc1.5",  # many oxidation states
]


def formulas() -> list[str]:
    """The fixed list plus seeded random 2- to 5-element formulas."""
    rng = np.random.default_rng(2016)
    common = ["O", "F", "Cl", "S", "N", "Li", "Na", "K", "Mg", "Ca", "Al", "Ti", "Fe", "Mn", "Cu"]
    out = list(FIXED)
    for i in range(120):
        pool = common if i % 2 else ELEMNET_ELEMENTS
        k = int(rng.integers(2, 6))
        symbols = rng.choice(pool, size=k, replace=False)
        amounts = rng.choice([1, 1, 2, 3, 4, 0.5, 1.5, 0.25, 0.1], size=k)
        out.append("".join(f"{s}{a:g}" for s, a in zip(symbols, amounts)))
    return out


def matminer_featurizers():
    from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital

    return [
        ElementProperty.from_preset("magpie"),
        Stoichiometry(),
        ValenceOrbital(props=["frac"]),
        IonProperty(fast=True),
    ]


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    from pymatgen.core import Composition

    names = formulas()
    featurizers = matminer_featurizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [
            np.concatenate([np.asarray(f.featurize(Composition(s)), dtype=np.float64) for f in featurizers])
            for s in names
        ]
    return names, np.array(rows)


def test_labels_are_matminers():
    labels = [label for f in matminer_featurizers() for label in f.feature_labels()]
    assert len(MAGPIE_LABELS) == 145
    assert list(MAGPIE_LABELS) == labels


def test_features_equal_matminer(reference):
    names, expected = reference
    got = magpie_features(parse_compositions(names).fractions)
    assert got.shape == (len(names), 145) and got.dtype == np.float32
    for j, label in enumerate(MAGPIE_LABELS):
        bad = ~np.isclose(got[:, j], expected[:, j], rtol=1e-5, atol=1e-6, equal_nan=True)
        detail = [(names[i], float(got[i, j]), float(expected[i, j])) for i in np.flatnonzero(bad)[:5]]
        np.testing.assert_allclose(
            got[:, j], expected[:, j], rtol=1e-5, atol=1e-6, equal_nan=True,
            err_msg=f"column {j} {label!r}: (formula, ours, matminer) {detail}",
        )


def test_formula_set_covers_both_charge_balance_outcomes(reference):
    names, expected = reference
    possible = expected[:, MAGPIE_LABELS.index("compound possible")]
    assert 20 < possible.sum() < len(names) - 20
    assert len(names) >= 200 and parse_compositions(names).n_elements.max() >= 5


def test_chunks_and_dtypes_do_not_change_the_result():
    rng = np.random.default_rng(7)
    f = rng.random((500, 86)) * (rng.random((500, 86)) < 0.05)
    f[:, 7] += 0.01  # every row has oxygen
    f /= f.sum(axis=1, keepdims=True)
    whole = magpie_features(f.astype(np.float32))
    np.testing.assert_array_equal(magpie_features(f.astype(np.float32), chunk_rows=37), whole)
    np.testing.assert_allclose(magpie_features(f), whole, rtol=1e-5, atol=1e-6)


def test_table_and_bad_input():
    table = magpie_element_table()
    assert table.shape == (86, 22) and np.isfinite(table).all()
    assert magpie_element_table() is table  # read once
    with pytest.raises(ValueError):
        magpie_features(np.zeros((2, 86), np.float32))
    with pytest.raises(ValueError):
        magpie_features(np.ones((2, 85), np.float32))
