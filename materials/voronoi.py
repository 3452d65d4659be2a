"""The Voronoi structure attributes of Ward et al. (2017), IRNet's "design problem".

Ward, Liu, Krishna, Hegde, Agrawal, Choudhary, Wolverton, "Including crystal
structure attributes in machine learning models of formation energies via
Voronoi tessellations", Phys. Rev. B 96, 024104 (2017); dissertation ch. 4
(145 composition + 126 structure attributes). They are computed with
matminer's own featurizers, the ``ward-prb-2017`` presets: effective
coordination number statistics, structural heterogeneity (bond-length and
cell-size variation), chemical ordering (Warren-Cowley-like parameters, shells
1-3), maximum packing efficiency, and local property differences of the 22
Magpie properties. matminer 0.10.1 labels 128 of them (the paper counts 126).

A Voronoi tessellation per site costs about a second per structure on one core
(about 9 sites), so the datamodule computes them once, in chunks that survive
an interruption, and caches them (``datamodules.structure_data``).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def ward2017_featurizer():
    """matminer's MultipleFeaturizer of the Ward 2017 structure attributes."""
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.structure import (
        ChemicalOrdering,
        MaximumPackingEfficiency,
        SiteStatsFingerprint,
        StructuralHeterogeneity,
    )

    return MultipleFeaturizer([
        SiteStatsFingerprint.from_preset("CoordinationNumber_ward-prb-2017"),
        StructuralHeterogeneity(),
        ChemicalOrdering(),
        MaximumPackingEfficiency(),
        SiteStatsFingerprint.from_preset("LocalPropertyDifference_ward-prb-2017"),
    ])


def voronoi_labels() -> list[str]:
    return list(ward2017_featurizer().feature_labels())


N_VORONOI = 128


def voronoi_attributes(structure) -> np.ndarray:
    """(N_VORONOI,) float64 attributes of one ordered structure; NaN where matminer fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values = ward2017_featurizer().featurize(structure)
        except Exception:  # noqa: BLE001 - a tessellation that fails is a missing row, imputed later
            return np.full(N_VORONOI, np.nan)
    return np.asarray(values, dtype=np.float64)
