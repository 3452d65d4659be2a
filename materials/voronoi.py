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


def wrapped_into_cell(structure):
    """The same crystal with every fractional coordinate in [0, 1).

    pymatgen's ``VoronoiNN.get_all_voronoi_polyhedra`` (which matminer's Ward 2017
    featurizers call) finds "No Voronoi neighbors" for a site that sits just outside
    the cell (Materials Project's CdSe, mp-1070, has a Cd at c = -3.1e-05): 147 of
    flla_2015's 3,936 crystals lost all their attributes that way before wrapping.
    """
    from pymatgen.core import Structure

    frac = np.mod(structure.frac_coords, 1.0)
    frac[frac > 1.0 - 1e-10] = 0.0  # np.mod(-1e-17, 1) is 1.0
    return Structure(structure.lattice, [site.species for site in structure], frac)


def voronoi_attributes(structure) -> np.ndarray:
    """(N_VORONOI,) float64 attributes of one ordered structure (sites wrapped into the cell);
    NaN where matminer still fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values = ward2017_featurizer().featurize(wrapped_into_cell(structure))
        except Exception:  # noqa: BLE001 - a tessellation that fails is a missing row, imputed later
            return np.full(N_VORONOI, np.nan)
    return np.asarray(values, dtype=np.float64)
