"""Convex hulls per chemical system against pymatgen's PhaseDiagram, on real OQMD data."""

import itertools

import numpy as np
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from datamodules.composition import CompositionDataModule
from materials.elements import ELEMENT_INDEX, ELEMNET_ELEMENTS
from materials.enumeration import ratio_patterns
from materials.hull import BinaryHullTable, HullIndex


@pytest.fixture(scope="module")
def oqmd():
    dm = CompositionDataModule(dataset="oqmd_formation_enthalpy")
    dm.setup()
    fractions, energies = dm.compositions["train"]
    return fractions, energies, HullIndex(fractions, energies)


def pymatgen_hull(index: HullIndex, system: tuple[int, ...]) -> PhaseDiagram:
    symbols = [ELEMNET_ELEMENTS[i] for i in system]
    points, energies = index.points(system)
    entries = [PDEntry(Composition({s: 1}), 0.0) for s in symbols]
    entries += [PDEntry(Composition({s: x for s, x in zip(symbols, row) if x > 0}), e * 1.0)
                for row, e in zip(points, energies)]
    return PhaseDiagram(entries)


SYSTEMS = ["Ti-O", "Na-Fe-Mn-O", "Li-Co-O", "Al-Ni-Zr", "Na-Y-F", "Cu-Zn-O-S", "Ba-Sr-Ti-O"]


@pytest.mark.parametrize("system", SYSTEMS)
def test_hull_energy_equals_pymatgen_on_random_queries(oqmd, system):
    _, _, index = oqmd
    cols = tuple(sorted(ELEMENT_INDEX[s] for s in system.split("-")))
    symbols = [ELEMNET_ELEMENTS[i] for i in cols]
    pd_ref = pymatgen_hull(index, cols)
    rng = np.random.default_rng(len(system))
    x = rng.dirichlet(np.ones(len(cols)) * 0.7, size=60)
    x[:15, 0] = 0  # queries on a face (a subsystem) too
    x /= x.sum(axis=1, keepdims=True)
    full = np.zeros((len(x), 86))
    full[:, cols] = x
    mine = index.hull_energy(full)
    ref = [pd_ref.get_hull_energy_per_atom(Composition({s: v for s, v in zip(symbols, row) if v > 0})) for row in x]
    np.testing.assert_allclose(mine, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(index.hull_energy_grouped(np.array([cols]), x[None])[0], ref, atol=1e-6, rtol=0)


def test_binary_bound_is_exact_for_binaries_and_never_below_the_hull(oqmd):
    _, _, index = oqmd
    ids = np.array(sorted(ELEMENT_INDEX[s] for s in ["Li", "O", "F", "Na", "Ti", "Fe", "Y", "Cl"]))
    table = BinaryHullTable(index, ids)
    for k in (2, 3, 4):
        positions = np.array(list(itertools.combinations(range(len(ids)), k)))
        p = ratio_patterns(k, 10)
        x = np.broadcast_to(p / p.sum(axis=1, keepdims=True), (len(positions),) + p.shape)
        bound = table.binary_bound(positions, x)
        exact = index.hull_energy_grouped(ids[positions], np.ascontiguousarray(x))
        if k == 2:
            np.testing.assert_allclose(bound, exact, atol=1e-12)
        assert (exact <= bound + 1e-6).all()
        assert (bound <= 0).all()


def test_exact_hull_of_a_made_up_binary():
    fractions = np.zeros((3, 86))
    fractions[0, [0, 1]] = [0.5, 0.5]  # AB at -1 eV/atom
    fractions[1, [0, 1]] = [0.25, 0.75]  # AB3 at -0.1: above the AB-B tie line (-0.5)
    fractions[2, [2, 3]] = [0.5, 0.5]  # another system, positive: never on a hull
    index = HullIndex(fractions, np.array([-1.0, -0.1, 0.3]))
    q = np.zeros((4, 86))
    q[:, 0] = [0.5, 0.25, 0.75, 0.0]
    q[:, 1] = 1 - q[:, 0]
    q[3, [0, 1, 2, 3]] = [0, 0, 0.5, 0.5]
    np.testing.assert_allclose(index.hull_energy(q), [-1.0, -0.5, -0.5, 0.0])
