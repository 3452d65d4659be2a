"""datamodules.composition_data: the cleaning and split rules of diss. 3.2.1 / 5.2.1."""

import numpy as np
import pytest

from datamodules.composition_data import assign_splits, chemical_system_mask, clean, lowest_per_composition
from materials.composition import composition_keys, parse_compositions


def _data():
    formulas = ["Fe", "NaCl", "Na2Cl2", "TiO2", "Ti2O4", "Ti2O3", "FeO", "Fe2O3", "Fe3O4", "NiO", "CuO", "ZnO",
                "MgO", "CaO", "SrO", "BaO", "LiF", "NaF", "KF", "RbF", "CsF", "TiN", "TiC", "ZrO2", "HfO2"]
    targets = np.array([0.0, -2.0, -2.1, -3.0, -3.2, -2.9] + [-1.0 - 0.01 * i for i in range(19)])
    return parse_compositions(formulas).fractions, targets


def test_lowest_target_kept_per_composition():
    fractions, targets = _data()
    keep = lowest_per_composition(composition_keys(fractions), targets)
    kept = set(keep.tolist())
    assert 2 in kept and 1 not in kept  # Na2Cl2 (-2.1) beats NaCl (-2.0)
    assert 4 in kept and 3 not in kept  # Ti2O4 (-3.2) beats TiO2 (-3.0)


@pytest.mark.parametrize("method", ["random", "kfold", "holdout_system"])
def test_no_composition_on_two_sides_after_dedupe(method):
    fractions, targets = _data()
    keep, split, report = clean(fractions, targets, None, dict(method=method, seed=1, n_folds=5, fold=2,
                                                               holdout_system="Ti-O"), outlier_sigma=None)
    assert report["dropped_single_element"] == 1 and report["dropped_duplicate_composition"] == 2
    keys = composition_keys(fractions[keep])
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(keys[split == a]) & set(keys[split == b])
    assert len(set(keys)) == len(keys)


def test_holdout_system_takes_every_ti_o_compound_and_nothing_else():
    fractions, targets = _data()
    keep, split, _ = clean(fractions, targets, None, dict(method="holdout_system", holdout_system="Ti-O"), None)
    ti_o = chemical_system_mask(fractions[keep], "Ti-O")
    assert (split[ti_o] == 2).all() and (split[~ti_o] != 2).all() and ti_o.sum() == 2  # Ti2O4, Ti2O3
    with pytest.raises(ValueError, match="unknown element"):
        chemical_system_mask(fractions, "Ti-Qq")


def test_kfold_test_sets_partition_the_data():
    fractions = np.eye(86, dtype=np.float32)[:50] * 0.5 + np.eye(86, dtype=np.float32)[1:51] * 0.5
    seen = np.concatenate([np.flatnonzero(assign_splits(fractions, "kfold", seed=3, n_folds=5, fold=k) == 2)
                           for k in range(5)])
    assert sorted(seen.tolist()) == list(range(50))


def test_outliers_use_training_statistics_and_spare_the_test_set():
    rng = np.random.default_rng(0)
    n = 400
    a, b = rng.integers(0, 86, n), rng.integers(0, 86, n)
    fractions = np.zeros((n, 86), np.float32)
    fractions[np.arange(n), a] += rng.uniform(0.1, 0.9, n)
    fractions[np.arange(n), b] += 1 - fractions[np.arange(n), a]
    fractions = fractions[(fractions > 0).sum(1) == 2]
    keys = composition_keys(fractions)
    _, first = np.unique(keys, return_index=True)
    fractions = fractions[np.sort(first)]
    targets = rng.normal(0, 1, len(fractions))
    given = np.zeros(len(fractions), np.int8)
    given[-40:] = 2
    targets[0], targets[-1] = 50.0, 50.0  # far outliers in train and in test
    keep, split, report = clean(fractions, targets, given, {}, outlier_sigma=5.0)
    assert 0 not in keep and len(fractions) - 1 in keep
    assert report["dropped_outlier"] == 1
    assert report["compositions_on_two_sides_of_published_split"] == {"train&val": 0, "train&test": 0, "val&test": 0}
