"""Compositions (OQMD, Materials Project, JARVIS, SSUB, any CSV) as ElemNet or
IRNet inputs.

``prepare_data`` fetches and verifies the files and caches the parsed element
fractions (and Magpie attributes) once; ``setup`` only reads the caches, cleans
and splits (``datamodules.composition_data``) and standardises features with
training-split statistics, which travel in the checkpoint (``state_dict``) so a
trained model featurises new formulas the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch

from datamodules.batches import SplitLoaders, TensorRows
from datamodules.composition_data import MIN_ROWS_PER_SPLIT, clean, require_rows_per_split
from datamodules.sources.derived import DERIVED, derived_file
from datamodules.sources.element_tables import element_table
from datamodules.sources.readers import SettingError, read_table
from datamodules.sources.registry import DATASETS, STRUCTURE_DATASETS, data_dir, dataset_files, sha256_of
from materials.composition import parse_compositions
from materials.elements import ELEMNET_ELEMENTS, N_ELEMENTS
from materials.magpie import FEATURIZER_VERSION, N_MAGPIE, magpie_features

CACHE_VERSION = 1
FEATURE_WIDTHS = {"fractions": N_ELEMENTS, "magpie": N_MAGPIE}


#: the unit of each registered composition dataset's target (summaries and prediction columns say it)
TARGET_UNITS = {
    "oqmd_formation_enthalpy": "eV/atom", "oqmd_energy_per_atom": "eV/atom", "oqmd_band_gap": "eV",
    "oqmd_volume_per_atom": "Å³/atom", "mp_e_hull": "eV/atom", "mp_e_form": "eV/atom", "mp_gap": "eV",
    "ssub": "eV/atom",
}


def featurize(fractions: np.ndarray, kind: str) -> np.ndarray:
    """Input vectors of one kind from (n, 86) element fractions."""
    if kind == "fractions":
        return fractions.astype(np.float32)
    if kind == "magpie":
        return magpie_features(fractions)
    raise ValueError(f"unknown features {kind!r}; use one of {sorted(FEATURE_WIDTHS)}")


class CompositionDataModule(SplitLoaders, pl.LightningDataModule):
    """Element-fraction (ElemNet) or Magpie (IRNet) vectors and a scalar target.

    Args:
        dataset: a registered dataset (``oqmd_formation_enthalpy``, ``mp_e_form``,
            ``ssub``, ...) or a path to a user file: CSV with ``formula`` and
            ``target`` columns, JARVIS ``dft_3d`` JSON, or SSUB-style ``.dat``.
        split: ``fixed`` (the dataset's published split), ``random``, ``kfold``
            or ``holdout_system``.
        train_fraction: use only this seeded share of the training split (a
            quick CPU run); validation and test are never subsampled.
        train_subset: a ``.npy`` of positions in the (cleaned) training split to train on, the others left
            out (active learning's labelled rows); validation and test unchanged.
        skip_bad_rows: count bad rows in the cleaning report instead of stopping.
        batching: ``random`` batches, or ``by_element_count``: each training batch holds compositions of
            one element count (for set models such as Roost, which pad a batch to its largest composition).
    """

    def __init__(
        self,
        dataset: str = "oqmd_formation_enthalpy",
        features: Literal["fractions", "magpie"] = "fractions",
        formula_column: str = "formula",
        target_column: str = "target",
        split: Literal["fixed", "random", "kfold", "holdout_system"] = "fixed",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        n_folds: int = 10,
        fold: int = 0,
        holdout_system: str = "Ti-O",
        holdout_rule: Literal["only", "contains"] = "only",
        outlier_sigma: float | None = 5.0,
        train_fraction: float = 1.0,
        train_subset: str | None = None,
        standardize: bool | None = None,
        skip_bad_rows: bool = False,
        batching: Literal["random", "by_element_count"] = "random",
        batch_size: int = 32,
        eval_batch_size: int = 4096,
        seed: int = 0,
    ):
        super().__init__()
        if features not in FEATURE_WIDTHS:
            raise ValueError(f"unknown features {features!r}; use one of {sorted(FEATURE_WIDTHS)}")
        self.save_hyperparameters()
        self.standardize = (features == "magpie") if standardize is None else standardize
        self.feature_mean: torch.Tensor | None = None
        self.feature_std: torch.Tensor | None = None
        self.cleaning_report: dict = {}
        self.splits: dict[str, TensorRows] = {}
        self.compositions: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def n_features(self) -> int:
        """Input width, linked into the net by the CLI."""
        return FEATURE_WIDTHS[self.hparams.features]

    @staticmethod
    def element_table(name: str) -> torch.Tensor:
        """The element table ``name`` (e.g. ``mat2vec``), one row per input element, for a net that starts
        its element embeddings from it (Roost); verified and cached by :mod:`datamodules.sources.element_tables`."""
        return torch.from_numpy(element_table(name))

    @staticmethod
    def _only_subset(keep: np.ndarray, split: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
        """``keep`` and ``split`` with only the training rows at the positions listed in the file ``path``."""
        positions = np.load(path, allow_pickle=False)
        train_rows = np.flatnonzero(split == 0)
        if positions.ndim != 1 or positions.dtype.kind not in "iu" or len(positions) == 0 or \
                positions.min() < 0 or positions.max() >= len(train_rows):
            raise SettingError(f"train_subset {path}: expected a 1-D array of positions in the training split "
                             f"(0 … {len(train_rows) - 1}), got {positions.dtype} of shape {positions.shape}")
        mask = split != 0
        mask[train_rows[positions]] = True
        return keep[mask], split[mask]

    # ----------------------------------------------------------- files, caches
    def _files(self) -> dict[str, Path]:
        name = self.hparams.dataset
        if name in STRUCTURE_DATASETS:
            raise SettingError(f"dataset {name!r} holds crystal structures: use datamodules.structure.StructureDataModule "
                             f"(representation: fractions or magpie for a composition model)")
        if name in DATASETS:
            return dataset_files(name)
        if name in DERIVED:
            return {"all": derived_file(name)}
        path = Path(name)
        if not path.exists():
            raise FileNotFoundError(
                f"dataset {name!r} is neither a registered dataset ({', '.join(sorted([*DATASETS, *DERIVED]))}) "
                "nor a file"
            )
        return {"all": path}

    def _cache_path(self, file: Path, digest: str) -> Path:
        h = self.hparams
        tag = f"{digest[:16]}-{h.formula_column}-{h.target_column}-{int(h.skip_bad_rows)}-v{CACHE_VERSION}"
        return data_dir() / "cache" / "compositions" / f"{file.stem}-{tag}.npz"

    def _load_file(self, file: Path) -> dict:
        """Parsed table of one file (with its ``sha256``), from a verified cache or built once."""
        digest = sha256_of(file)
        cache = self._cache_path(file, digest)
        if cache.exists():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    cached = {k: z[k] for k in z.files}
                if str(cached["sha256"]) == digest and cached["fractions"].shape[1] == N_ELEMENTS:
                    cached["problems"] = json.loads(str(cached["problems"]))
                    return cached
            except Exception:  # a torn or stale cache is rebuilt, never trusted
                pass
        h = self.hparams
        table = read_table(file, h.formula_column, h.target_column, skip_bad=h.skip_bad_rows)
        parsed = parse_compositions(table.formulas, str(file), rows=table.rows, skip_bad=h.skip_bad_rows)
        problems = [(int(r), str(v), why) for r, v, why in table.problems + parsed.problems]
        entry = {
            "sha256": np.array(digest),
            "fractions": parsed.fractions,
            "targets": table.targets[parsed.ok],
            "rows": table.rows[parsed.ok],
            "problems": np.array(json.dumps(problems)),
        }
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".part.npz")
        np.savez(tmp, **entry)
        tmp.replace(cache)
        entry["problems"] = problems
        return entry

    def _features_for(self, file: Path, part: dict) -> np.ndarray:
        """Input vectors of one parsed file (``_load_file``), Magpie cached beside it."""
        kind, fractions = self.hparams.features, part["fractions"]
        if kind == "fractions":
            return fractions
        # keyed by the file's sha256 and the featuriser's version: a changed file or featuriser is recomputed
        cache = self._cache_path(file, str(part["sha256"])).with_suffix(f".{kind}-v{FEATURIZER_VERSION}.npy")
        if cache.exists():
            try:
                feats = np.load(cache, allow_pickle=False)
                if feats.shape == (len(fractions), FEATURE_WIDTHS[kind]):
                    return feats
            except Exception:
                pass
        feats = featurize(fractions, kind)
        tmp = cache.with_suffix(".part.npy")
        np.save(tmp, feats)
        tmp.replace(cache)
        return feats

    def prepare_data(self) -> None:
        for file in self._files().values():
            self._features_for(file, self._load_file(file))

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        h = self.hparams
        files = self._files()
        parts = {name: self._load_file(f) for name, f in files.items()}
        fractions = np.concatenate([p["fractions"] for p in parts.values()])
        feats = np.concatenate([self._features_for(files[n], p) for n, p in parts.items()])
        targets = np.concatenate([p["targets"] for p in parts.values()])
        problems = [pr for p in parts.values() for pr in p["problems"]]
        if h.split == "fixed":
            if "all" in parts:
                raise SettingError(f"dataset {h.dataset!r} has no published split; use split: random, kfold or holdout_system")
            given = np.concatenate([np.full(len(parts[s]["targets"]), i, np.int8) for i, s in enumerate(("train", "val", "test"))])
        else:
            given = None
        split_kwargs = dict(method=h.split, seed=h.seed, val_fraction=h.val_fraction, test_fraction=h.test_fraction,
                            n_folds=h.n_folds, fold=h.fold, holdout_system=h.holdout_system,
                            holdout_rule=h.holdout_rule)
        keep, split, report = clean(fractions, targets, given, split_kwargs, h.outlier_sigma)
        if h.train_fraction < 1.0:
            train_rows = np.flatnonzero(split == 0)
            rng = np.random.default_rng(h.seed)
            # never below the minimum a split needs (as StructureDataModule): a smoke run on a small user file trains
            drop = rng.permutation(train_rows)[max(MIN_ROWS_PER_SPLIT, int(round(h.train_fraction * len(train_rows)))):]
            mask = np.ones(len(keep), dtype=bool)
            mask[drop] = False
            keep, split = keep[mask], split[mask]
            report["train_subsampled_to"] = int((split == 0).sum())  # "sizes" stay the cleaned splits' sizes
        if h.train_subset:
            keep, split = self._only_subset(keep, split, h.train_subset)
            report["train_subsampled_to"] = int((split == 0).sum())
        rows_read = sum(len(p["targets"]) for p in parts.values()) + len(problems)
        self.cleaning_report = {
            "dataset": h.dataset, "files": {n: str(f) for n, f in files.items()}, "rows_read": rows_read,
            "dropped_bad_rows": len(problems), "bad_rows": problems[:50], **report,
            "file_sha256": {n: str(p["sha256"]) for n, p in parts.items()},
        }
        # the training subsample keeps the minimum, so checking the cleaned splits' sizes covers it
        source = str(files["all"]) if len(files) == 1 and "all" in files else f"dataset {h.dataset!r}"
        require_rows_per_split(self.cleaning_report, source, self._too_few_rows_hint())
        # element fractions and targets per split (the screening hull is built from "train")
        self.compositions = {name: (fractions[keep][split == s], targets[keep][split == s])
                             for s, name in enumerate(("train", "val", "test"))}
        x = torch.from_numpy(np.ascontiguousarray(feats[keep], dtype=np.float32))
        y = torch.from_numpy(targets[keep].astype(np.float32)).unsqueeze(1)
        split_t = torch.from_numpy(split)
        if self.standardize and self.feature_mean is None:
            train_x = x[split_t == 0]
            self.feature_mean = torch.nanmean(train_x, dim=0)
            self.feature_std = torch.sqrt(torch.nanmean((train_x - self.feature_mean) ** 2, dim=0)).clamp_min(1e-8)
        x = self.transform(x)
        self.splits = {name: TensorRows(x[split_t == s], y[split_t == s]) for s, name in enumerate(("train", "val", "test"))}

    def _too_few_rows_hint(self) -> str:
        """What would leave every split enough rows, for the error of ``require_rows_per_split``."""
        h, sizes = self.hparams, self.cleaning_report["sizes"]
        short = {name for name, n in sizes.items() if n < MIN_ROWS_PER_SPLIT}
        fixes = ["add rows to the data"]
        if h.split == "kfold" and "test" in short:
            fixes.append(f"use fewer folds (--data.init_args.n_folds, now {h.n_folds})")
        if h.split == "holdout_system" and "test" in short:
            fixes.append(f"hold out a larger chemical system than {h.holdout_system} (rule {h.holdout_rule!r})")
        if h.split != "fixed" and "val" in short:
            fixes.append(f"give validation a larger share (--data.init_args.val_fraction, now {h.val_fraction})")
        if h.split == "random" and "test" in short:
            fixes.append(f"give the test split a larger share (--data.init_args.test_fraction, now {h.test_fraction})")
        return "To fix: " + "; or ".join(fixes) + "."

    @property
    def target_unit(self) -> str | None:
        """The target's unit for a registered dataset (None for a user's file: its unit is the user's)."""
        return TARGET_UNITS.get(str(self.hparams.dataset))

    def batch_groups(self) -> torch.Tensor | None:
        if self.hparams.batching == "random":
            return None
        return torch.from_numpy((self.compositions["train"][0] > 0).sum(axis=1))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise with training statistics; a missing attribute becomes the training mean."""
        if self.standardize:
            x = (x - self.feature_mean) / self.feature_std
        return torch.nan_to_num(x, nan=0.0)

    def featurize_formulas(self, formulas, skip_bad: bool = False, source: str = "<input>", first_row: int = 2):
        """Model inputs for new formulas, exactly as the training data were made.

        ``first_row`` is the file row of the first formula (2 below a CSV header).
        """
        parsed = parse_compositions(formulas, source, first_row=first_row, skip_bad=skip_bad)
        x = torch.from_numpy(featurize(parsed.fractions, self.hparams.features).astype(np.float32))
        return self.transform(x), parsed

    # ------------------------------------------------- checkpointed state
    def state_dict(self) -> dict:
        return {"feature_mean": self.feature_mean, "feature_std": self.feature_std, "elements": list(ELEMNET_ELEMENTS)}

    def load_state_dict(self, state: dict) -> None:
        elements = state.get("elements")
        if elements is not None and tuple(elements) != ELEMNET_ELEMENTS:
            raise ValueError(
                f"the checkpoint was trained on a different element list ({len(elements)} elements: "
                f"{', '.join(elements[:5])}, ...) than this project's {N_ELEMENTS} ElemNet elements"
            )
        self.feature_mean, self.feature_std = state.get("feature_mean"), state.get("feature_std")
