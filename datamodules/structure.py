"""Crystal structures (matminer's flla_2015 and friends, CIF folders, matbench or
JARVIS JSON) as crystal graphs (CGCNN) or as vectors (ElemNet fractions, IRNet
Magpie attributes, Magpie + Ward 2017 Voronoi attributes: the "design problem"
of dissertation ch. 4).

One class for every representation so that all models of a comparison see the
same cleaned, deduplicated structures and the same split: the split depends
only on the data and the seed, never on the representation.

Cleaning: rows that cannot be parsed, have partial occupancies, an element
without atom features or an atom without neighbours are errors, or counted in
the cleaning report with ``skip_bad_rows``; the same structure twice (same
reduced formula, volume per atom to 0.01 Å^3 and neighbour-distance sum to
0.001 Å) keeps its lowest target, before splitting. Polymorphs (one reduced
formula, several structures) are kept: they are what a structure-aware model
can tell apart and a composition model cannot; ``polymorph_mask(split)`` marks
them so the ``PolymorphMetrics`` callback reports them separately.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch

from datamodules.batches import SplitLoaders, TensorRows
from datamodules.composition_data import SPLITS, assign_splits, lowest_per_composition
from datamodules.graphs import PackedGraphs
from datamodules.sources.registry import DATASETS, STRUCTURE_DATASETS, dataset_files
from datamodules.structure_data import parsed_structures, voronoi_table
from materials.crystal_graph import ATOM_FEATURE_WIDTH, atom_feature_table
from materials.elements import N_ELEMENTS
from materials.magpie import N_MAGPIE, magpie_features
from materials.voronoi import N_VORONOI

WIDTHS = {"graph": ATOM_FEATURE_WIDTH, "fractions": N_ELEMENTS, "magpie": N_MAGPIE,
          "magpie_voronoi": N_MAGPIE + N_VORONOI}


def structure_keys(parsed: dict) -> np.ndarray:
    """A key per structure that two copies of one crystal share (see module doc)."""
    ptr = parsed["edge_ptr"]
    dist_sum = np.add.reduceat(parsed["edge_dist"].astype(np.float64), ptr[:-1]) / np.diff(parsed["node_ptr"])
    return np.array([f"{f}|{v:.2f}|{d:.3f}" for f, v, d in
                      zip(parsed["formulas"], parsed["volume_per_atom"], dist_sum)])


class StructureDataModule(SplitLoaders, pl.LightningDataModule):
    """Structures and a scalar target as crystal graphs or attribute vectors.

    Args:
        dataset: ``flla_2015`` (default), ``dielectric_constant``, ``elastic_tensor``,
            or a user file/folder (``datamodules.sources.structures``).
        target_column: ``formation_energy_per_atom``, ``e_above_hull``, ``band_gap``, ``K_VRH``, ...
        representation: ``graph`` (CGCNN), ``fractions`` (ElemNet), ``magpie``
            (IRNet on composition), ``magpie_voronoi`` (IRNet on composition + structure).
        cutoff, max_neighbors: the crystal graph's neighbour radius (Å) and count per atom.
        split: ``random`` or ``kfold`` (fold ``fold`` of ``n_folds`` is the test set).
        limit: use only the first ``limit`` structures of the file (quick checks).
        n_jobs: processes for the Voronoi attributes (-1: all cores).
    """

    def __init__(
        self,
        dataset: str = "flla_2015",
        target_column: str = "formation_energy_per_atom",
        id_column: str = "material_id",
        representation: Literal["graph", "fractions", "magpie", "magpie_voronoi"] = "graph",
        cutoff: float = 8.0,
        max_neighbors: int = 12,
        split: Literal["random", "kfold"] = "random",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        n_folds: int = 5,
        fold: int = 0,
        train_fraction: float = 1.0,
        limit: int | None = None,
        skip_bad_rows: bool = False,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        n_jobs: int = -1,
        seed: int = 0,
    ):
        super().__init__()
        if representation not in WIDTHS:
            raise ValueError(f"unknown representation {representation!r}; use one of {sorted(WIDTHS)}")
        self.save_hyperparameters()
        self.splits: dict[str, PackedGraphs | TensorRows] = {}
        self.cleaning_report: dict = {}
        self.formulas: dict[str, np.ndarray] = {}
        self.feature_mean: torch.Tensor | None = None
        self.feature_std: torch.Tensor | None = None

    @property
    def n_features(self) -> int:
        """Atom-feature width (graphs) or input width (vectors), linked into the net by the CLI."""
        return WIDTHS[self.hparams.representation]

    def _file(self) -> Path:
        name = self.hparams.dataset
        if name in STRUCTURE_DATASETS:
            return dataset_files(name)["all"]
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} holds compositions, not structures: use "
                             f"datamodules.composition.CompositionDataModule")
        if not Path(name).exists():
            raise FileNotFoundError(f"dataset {name!r} is neither a registered structure dataset "
                                    f"({', '.join(STRUCTURE_DATASETS)}) nor a file or CIF folder")
        return Path(name)

    def _parsed(self) -> dict:
        h = self.hparams
        return parsed_structures(self._file(), h.target_column, h.id_column, h.skip_bad_rows, h.cutoff, h.max_neighbors)

    def prepare_data(self) -> None:
        parsed = self._parsed()
        if self.hparams.representation == "magpie_voronoi":
            voronoi_table(self._file(), parsed, self.hparams.target_column, self.hparams.id_column,
                          rows=self._candidates(parsed), n_jobs=self.hparams.n_jobs)

    def _candidates(self, parsed: dict) -> np.ndarray:
        n = len(parsed["ids"])
        return np.arange(n if self.hparams.limit is None else min(n, self.hparams.limit))

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        h = self.hparams
        parsed = self._parsed()
        rows = self._candidates(parsed)
        targets = parsed["targets"][rows]
        chosen = lowest_per_composition(structure_keys(parsed)[rows], targets)
        rows, targets = rows[chosen], targets[chosen]
        split = assign_splits(parsed["fractions"][rows], h.split, seed=h.seed, val_fraction=h.val_fraction,
                              test_fraction=h.test_fraction, n_folds=h.n_folds, fold=h.fold)
        if h.train_fraction < 1.0:
            train = np.flatnonzero(split == 0)
            drop = np.random.default_rng(h.seed).permutation(train)[max(2, int(round(h.train_fraction * len(train)))):]
            keep = np.setdiff1d(np.arange(len(rows)), drop)
            rows, targets, split = rows[keep], targets[keep], split[keep]
        self.rows = {name: rows[split == s] for s, name in enumerate(SPLITS)}
        self.formulas = {name: parsed["formulas"][r] for name, r in self.rows.items()}
        counts = dict(zip(*np.unique(parsed["formulas"][rows], return_counts=True)))
        self._polymorphic = {f for f, c in counts.items() if c > 1}
        self.cleaning_report = {
            "dataset": h.dataset, "file": str(self._file()), "target": h.target_column,
            "structures_read": int(len(parsed["ids"]) + len(parsed["problems"])),
            "dropped_bad_rows": len(parsed["problems"]), "bad_rows": parsed["problems"][:50],
            "dropped_duplicate_structure": int(len(self._candidates(parsed)) - len(chosen)),
            "polymorphic_formulas": len(self._polymorphic),
            "sizes": {name: int(len(r)) for name, r in self.rows.items()},
        }
        if h.representation == "graph":
            table = atom_feature_table()
            self.splits = {name: PackedGraphs.select(table, parsed, r, parsed["targets"][r])
                           for name, r in self.rows.items()}
            return
        x = torch.from_numpy(self._vectors(parsed, rows))
        if h.representation == "magpie_voronoi":  # imputed with the training mean below: counted, not hidden
            failed = torch.isnan(x[:, N_MAGPIE:]).all(dim=1).numpy()
            self.cleaning_report["voronoi_failed"] = {name: int(failed[split == s].sum()) for s, name in enumerate(SPLITS)}
        if self.feature_mean is None:
            train_x = x[torch.from_numpy(split == 0)]
            self.feature_mean = torch.nanmean(train_x, dim=0)
            self.feature_std = torch.sqrt(torch.nanmean((train_x - self.feature_mean) ** 2, dim=0)).clamp_min(1e-8)
        if h.representation == "fractions":  # ElemNet reads raw fractions
            self.feature_mean, self.feature_std = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
        x = torch.nan_to_num((x - self.feature_mean) / self.feature_std, nan=0.0)
        y = torch.from_numpy(targets.astype(np.float32)).unsqueeze(1)
        self.splits = {name: TensorRows(x[torch.from_numpy(split == s)], y[torch.from_numpy(split == s)])
                       for s, name in enumerate(SPLITS)}

    def _vectors(self, parsed: dict, rows: np.ndarray) -> np.ndarray:
        fractions = parsed["fractions"][rows]
        kind = self.hparams.representation
        if kind == "fractions":
            return fractions.astype(np.float32)
        parts = [magpie_features(fractions)]
        if kind == "magpie_voronoi":
            h = self.hparams
            parts.append(voronoi_table(self._file(), parsed, h.target_column, h.id_column, rows=rows,
                                       n_jobs=h.n_jobs).astype(np.float32))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def polymorph_mask(self, split: str = "test") -> np.ndarray:
        """True for the structures of ``split`` whose reduced formula has another structure in the data."""
        return np.isin(self.formulas[split], list(self._polymorphic))

    def state_dict(self) -> dict:
        return {"feature_mean": self.feature_mean, "feature_std": self.feature_std}

    def load_state_dict(self, state: dict) -> None:
        self.feature_mean, self.feature_std = state.get("feature_mean"), state.get("feature_std")
