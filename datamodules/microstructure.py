"""Microstructure volume elements (MVEs) for the homogenization and localization CNNs.

``prepare_data`` simulates the dataset once (:mod:`datamodules.simulate.mve`:
two-phase elements labelled by the FFT elasticity solver) and ``setup`` only
reads the verified cache, drops duplicate elements and splits by element with a
fixed seed (the voxels of one element never straddle two splits).

- :class:`HomogenizationDataModule`: (1, N, N, N) voxels → effective C11 (GPa).
- :class:`LocalizationDataModule`: the k×k×k periodic neighbourhood of every voxel
  (k = 11) → its ε11 over the applied ε11; one sample per voxel, gathered per batch, or
  (``elements_per_batch``) whole elements whose every voxel the net predicts in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.batches import batch_loader, data_device
from datamodules.simulate.mve import MVEDatasetSpec, generate, open_checked
from datamodules.sources.registry import data_dir
from materials.microstructure import periodic_neighbourhoods

SPLITS = ("train", "val", "test")


class Voxels(Dataset):
    """uint8 elements → float (B, 1, N, N, N) inputs, per whole batch of rows."""

    def __init__(self, micro: torch.Tensor, target: torch.Tensor):
        self.micro, self.target = micro, target

    def __len__(self) -> int:
        return len(self.micro)

    def __getitem__(self, rows):
        rows = torch.as_tensor(rows, device=self.micro.device)
        return self.micro[rows].float()[:, None], self.target[rows]

    def to(self, device: torch.device) -> Voxels:
        self.micro, self.target = self.micro.to(device), self.target.to(device)
        return self


class Neighbourhoods(Dataset):
    """One sample per voxel of the given elements: its k³ neighbourhood and its target value."""

    def __init__(self, micro: torch.Tensor, target: torch.Tensor, k: int):
        self.micro, self.target, self.k = micro, target, k
        self.per_element = int(np.prod(micro.shape[1:]))

    def __len__(self) -> int:
        return len(self.micro) * self.per_element

    def __getitem__(self, rows):
        rows = torch.as_tensor(rows, device=self.micro.device)
        element, voxel = rows // self.per_element, rows % self.per_element
        x = periodic_neighbourhoods(self.micro, element, voxel, self.k).float()
        return x, self.target.reshape(len(self.micro), -1)[element, voxel][:, None]

    def to(self, device: torch.device) -> Neighbourhoods:
        self.micro, self.target = self.micro.to(device), self.target.to(device)
        return self


class ElementFields(Voxels):
    """Whole elements, (B, 1, N1, N2, N3), with every voxel's target, (B·N1·N2·N3, 1) in row-major order:
    the same samples as :class:`Neighbourhoods` in the same order, for nets that read whole elements."""

    def __getitem__(self, rows):
        micro, target = super().__getitem__(rows)
        return micro, target.reshape(-1, 1)


class MVEDataModule(pl.LightningDataModule):
    """Shared by both tasks: the simulated dataset, its cache and the split by element.

    Args:
        n_elements: elements to simulate (the papers: 8,550 of 51³; 2,500/3,000 of 21³).
        size: voxels per edge. contrast: E_hard / E_soft (E_hard = 120 GPa, ν = 0.3).
        volume_fraction / correlation_length / anisotropic / morphologies: how elements are drawn
            (:class:`materials.microstructure.MicrostructureSampler`; ``morphologies``: families of
            :mod:`materials.morphologies`, one drawn per element, e.g. [gaussian, particles, fibres, laminate]).
        tol: solver tolerance on the relative non-equilibrated stress.
        solver_precision: the solver's arithmetic, ``float64`` or ``float32`` (faster; the same physics checks
            pass at the datasets' tolerance, ``tests/test_elasticity.py``).
        split: fractions of elements for train / val / test.
        train_fraction: train on only this seeded share of the training elements (quick runs).
        simulate_device: ``auto`` (a GPU when present), ``cpu`` or ``cuda``.
        simulate_batch: elements per solver call (memory vs speed).
        data_device: where the elements live while training: ``auto`` puts them on the
            training device (a GPU then gathers batches and neighbourhoods itself, no host
            copies), ``cpu`` keeps them in host memory.
    """

    kind: str = "homogenization"
    target_unit: str = "GPa"

    def __init__(self, n_elements: int = 400, size: int = 51, contrast: float = 50.0,
                 volume_fraction: tuple[float, float] = (0.1, 0.9), correlation_length: tuple[float, float] = (1.0, 5.0),
                 anisotropic: bool = False, tol: float = 1e-5, seed: int = 0,
                 split: tuple[float, float, float] = (0.7, 0.15, 0.15), batch_size: int = 32,
                 train_fraction: float = 1.0, simulate_device: Literal["auto", "cpu", "cuda"] = "auto", simulate_batch: int = 8,
                 data_device: Literal["auto", "cpu"] = "auto", morphologies: list[str] | None = None,
                 solver_precision: Literal["float64", "float32"] = "float64"):
        super().__init__()
        self.save_hyperparameters()
        if abs(sum(split) - 1) > 1e-9 or min(split) <= 0:
            raise ValueError(f"split must be three positive fractions summing to 1, got {split}")
        self.spec = MVEDatasetSpec(self.kind, n_elements, size, tuple(volume_fraction), tuple(correlation_length),
                                   anisotropic, contrast, tol=tol, seed=seed, batch=simulate_batch,
                                   morphologies=None if morphologies is None else tuple(morphologies),
                                   precision=solver_precision)
        self.arrays: dict[str, dict[str, np.ndarray]] = {}

    @property
    def path(self) -> Path:
        return data_dir() / "mve" / self.spec.cache_name()

    def prepare_data(self):
        generate(self.spec, data_dir() / "mve", device=self.hparams.simulate_device)

    def _read(self) -> dict[str, np.ndarray]:
        names = ["micro", "c11", "volume_fraction"]  # what training and the baselines use
        names += ["strain11"] if self.kind == "localization" else []
        with open_checked(self.path, self.spec) as f:
            return {name: f[name][:] for name in names}

    def setup(self, stage: str | None = None):
        if self.arrays:
            return
        data = self._read()
        flat = data["micro"].reshape(len(data["micro"]), -1)
        _, first = np.unique(np.packbits(flat, axis=1), axis=0, return_index=True)  # duplicates: keep the first
        self.n_duplicates = len(flat) - len(first)
        kept = np.sort(first)
        order = kept[np.random.default_rng(self.hparams.seed).permutation(len(kept))]
        bounds = np.cumsum([0, *(round(f * len(order)) for f in self.hparams.split[:2])])
        parts = {"train": order[bounds[0]:bounds[1]], "val": order[bounds[1]:bounds[2]], "test": order[bounds[2]:]}
        keep = max(2, round(self.hparams.train_fraction * len(parts["train"])))  # R² needs two
        parts["train"] = parts["train"][:keep]
        self.arrays = {s: {k: v[np.sort(rows)] for k, v in data.items()} for s, rows in parts.items()}
        device = data_device(self)
        self.datasets = {s: self._dataset(self.arrays[s], s).to(device) for s in SPLITS}

    def _dataset(self, arrays: dict[str, np.ndarray], split: str) -> Dataset:
        raise NotImplementedError

    def _rows_per_batch(self) -> int:
        return self.hparams.batch_size

    def _loader(self, split: str):
        return batch_loader(self.datasets[split], self._rows_per_batch(), shuffle=split == "train",
                            seed=self.hparams.seed)

    def train_dataloader(self):
        return self._loader("train")

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def predict_dataloader(self):
        return self._loader("test")


class HomogenizationDataModule(MVEDataModule):
    """Whole elements → effective C11 in GPa (Yang et al. 2018: 8,550 elements of 51³ at contrast 50)."""

    kind = "homogenization"

    @property
    def n_features(self) -> int:
        return self.hparams.size

    def _dataset(self, arrays, split: str):
        return Voxels(torch.from_numpy(arrays["micro"]), torch.from_numpy(arrays["c11"]).float()[:, None])


class SampledElementFields(ElementFields):
    """Whole elements with ``voxels_per_element`` of their voxels each: ((B, 1, N1, N2, N3), (B, V)) inputs and
    the targets of those voxels, (B·V, 1), element by element. New random voxels at every call (training), or
    with ``seed`` one fixed draw per element (validation: the same voxels every epoch)."""

    def __init__(self, micro: torch.Tensor, target: torch.Tensor, voxels_per_element: int, seed: int | None = None):
        super().__init__(micro, target)
        self.n_voxels, self.per_element = voxels_per_element, int(np.prod(micro.shape[1:]))
        if not 0 < voxels_per_element <= self.per_element:
            raise ValueError(f"voxels_per_element must be 1 to {self.per_element} (the voxels of an element), "
                             f"got {voxels_per_element}")
        self.fixed = None if seed is None else self._draw(len(micro), torch.Generator().manual_seed(seed))

    def _draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        scores = torch.rand(n, self.per_element, generator=generator, device="cpu" if generator else self.micro.device)
        return scores.argsort(1)[:, :self.n_voxels].to(self.micro.device)

    def __getitem__(self, rows):
        rows = torch.as_tensor(rows, device=self.micro.device)
        voxels = self._draw(len(rows)) if self.fixed is None else self.fixed[rows]
        target = self.target[rows].reshape(len(rows), -1).gather(1, voxels)
        return (self.micro[rows].float()[:, None], voxels), target.reshape(-1, 1)

    def to(self, device: torch.device) -> SampledElementFields:
        super().to(device)
        self.fixed = None if self.fixed is None else self.fixed.to(device)
        return self


class LocalizationDataModule(MVEDataModule):
    """Every voxel's k³ neighbourhood → ε11 / applied ε11 (Yang et al. 2019: 21³, k = 11, contrast 10 and 50).

    ``batch_size`` counts voxels, drawn at random from all training elements (the paper's samples);
    ``neighbourhood`` is k. With ``elements_per_batch`` a batch is instead that many whole elements (every
    voxel of each, in random order of elements), for a net that predicts all voxels of an element in one
    pass (:class:`lightning_modules.nets.LocalizationCNN` does, with the same weights); ``batch_size`` is
    then unused. With ``voxels_per_element`` as well, training and validation batches score only that many
    voxels of each element (new random ones every training batch, one fixed draw per validation element; the
    test scores every voxel): the net's dense layers, nearly all of its work, run only there, so an epoch sees
    many more elements for the same time.
    """

    kind = "localization"
    target_unit = "ε11 / applied ε11"

    def __init__(self, n_elements: int = 300, size: int = 21, contrast: float = 10.0,
                 volume_fraction: tuple[float, float] = (0.1, 0.9), correlation_length: tuple[float, float] = (1.0, 4.0),
                 anisotropic: bool = False, tol: float = 1e-5, seed: int = 0,
                 split: tuple[float, float, float] = (0.7, 0.15, 0.15), batch_size: int = 512,
                 train_fraction: float = 1.0, simulate_device: Literal["auto", "cpu", "cuda"] = "auto",
                 simulate_batch: int = 32, neighbourhood: int = 11, data_device: Literal["auto", "cpu"] = "auto",
                 elements_per_batch: int | None = None, morphologies: list[str] | None = None,
                 solver_precision: Literal["float64", "float32"] = "float64", voxels_per_element: int | None = None):
        if elements_per_batch is not None and elements_per_batch < 1:
            raise ValueError(f"elements_per_batch must be a positive number of elements or None, got {elements_per_batch}")
        if voxels_per_element is not None and not elements_per_batch:
            raise ValueError("voxels_per_element needs elements_per_batch (whole elements per batch)")
        super().__init__(n_elements, size, contrast, volume_fraction, correlation_length, anisotropic, tol, seed,
                         split, batch_size, train_fraction, simulate_device, simulate_batch, data_device,
                         morphologies=morphologies, solver_precision=solver_precision)
        self.save_hyperparameters()

    @property
    def n_features(self) -> int:
        return self.hparams.neighbourhood

    def _dataset(self, arrays, split: str):
        micro, strain = torch.from_numpy(arrays["micro"]), torch.from_numpy(arrays["strain11"])
        if self.hparams.voxels_per_element and split != "test":
            seed = None if split == "train" else self.hparams.seed
            return SampledElementFields(micro, strain, self.hparams.voxels_per_element, seed)
        if self.hparams.elements_per_batch:
            return ElementFields(micro, strain)
        return Neighbourhoods(micro, strain, self.hparams.neighbourhood)

    def _rows_per_batch(self) -> int:
        return self.hparams.elements_per_batch or self.hparams.batch_size
