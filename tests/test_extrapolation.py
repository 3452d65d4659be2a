"""The extrapolation flag: unseen chemical systems and compositions far from every training composition."""

import numpy as np
import pytest

from materials.composition import parse_compositions
from materials.extrapolation import ExtrapolationFlag, chemical_systems, nearest_distance


def _fractions(*formulas):
    return parse_compositions(list(formulas), "test").fractions


def test_systems_distances_and_the_flag():
    train = _fractions("NaCl", "Fe2O3", "TiO2", "LiFePO4")
    assert len(set(chemical_systems(_fractions("Fe2O3", "FeO", "Fe3O4")).tolist())) == 1  # one system, Fe-O
    queries = _fractions("Na2Cl2", "FeO", "Ti2O3", "CuO")
    distance = nearest_distance(queries, train, chunk=2)  # chunks join up
    assert distance[0] == 0  # the same reduced composition
    assert np.allclose(distance[1], np.linalg.norm(queries[1] - train[1]))  # FeO's nearest: Fe2O3
    flag = ExtrapolationFlag(train, threshold=0.1)
    out = flag.assess(queries)
    assert out["chemical_system_seen"].tolist() == [True, True, True, False]  # no Cu-O in training
    assert out["extrapolation"].tolist() == [False, True, False, True]  # FeO: 0.14 from Fe2O3 > 0.1


def test_the_threshold_is_a_quantile_of_held_out_distances():
    rng = np.random.default_rng(0)
    train = rng.dirichlet(np.ones(86) * 0.05, size=500)
    held_out = rng.dirichlet(np.ones(86) * 0.05, size=300)
    flag = ExtrapolationFlag.fit(train, held_out, quantile=0.8)
    assert np.isclose(flag.threshold, np.quantile(nearest_distance(held_out, train), 0.8))
    assert abs((nearest_distance(held_out, train) > flag.threshold).mean() - 0.2) < 0.01


def test_flagged_errors_split_the_mae_by_the_flag():
    from callbacks.extrapolation import flagged_errors

    out = flagged_errors(np.array([True, False, False, True]), np.array([1.0, 0.1, 0.3, 3.0]))
    assert out == {"rows": 4.0, "flagged_share": 0.5, "mae_flagged": 2.0, "mae_unflagged": pytest.approx(0.2)}
    assert np.isnan(flagged_errors(np.array([True]), np.array([1.0]))["mae_unflagged"])
