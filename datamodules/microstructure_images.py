"""Two-phase microstructure images for the microstructure GAN (Yang, Li et al. 2018): 5,000 Gaussian-random-field
images of 128 × 128, drawn in ``setup`` from fixed seeds (filtered noise, no simulation: nothing is cached),
duplicates dropped before the seeded split. A batch is ``(images,)``: (B, 1, S, S) float 0/1.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from datamodules.batches import SplitLoaders, TensorRows
from datamodules.sources.readers import SettingError
from materials.microstructure import gaussian_random_images


class MicrostructureImagesDataModule(SplitLoaders, pl.LightningDataModule):
    """Args:
        n_images: images to draw (the paper: 5,000). size: pixels per side (128).
        volume_fraction / correlation_length: ranges drawn uniformly per image (the length per axis, pixels).
        split: fractions of images for train / val / test (val and test: the held-out images the generated ones
            are compared with).
        train_fraction: train on only this seeded share of the training images (quick runs).
    """

    def __init__(self, n_images: int = 5000, size: int = 128, volume_fraction: tuple[float, float] = (0.3, 0.7),
                 correlation_length: tuple[float, float] = (2.0, 8.0),
                 split: tuple[float, float, float] = (0.9, 0.05, 0.05), batch_size: int = 64,
                 eval_batch_size: int = 250, train_fraction: float = 1.0, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        if abs(sum(split) - 1) > 1e-9 or min(split) <= 0:
            raise SettingError(f"split must be three positive fractions summing to 1, got {split}")
        self.splits: dict[str, TensorRows] = {}

    @property
    def n_features(self) -> int:
        return self.hparams.size

    def setup(self, stage: str | None = None):
        if self.splits:
            return
        h = self.hparams
        seeds = np.random.default_rng(h.seed).integers(0, 2**62, h.n_images)
        parts = [gaussian_random_images(chunk, h.size, tuple(h.volume_fraction), tuple(h.correlation_length))
                 for chunk in np.array_split(seeds, max(1, len(seeds) // 500))]  # float64 FFTs in bounded memory
        drawn = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        images = drawn["images"]
        _, first = np.unique(np.packbits(images.reshape(len(images), -1).numpy(), axis=1), axis=0, return_index=True)
        self.n_duplicates = len(images) - len(first)
        order = np.sort(first)[np.random.default_rng(h.seed).permutation(len(first))]
        bounds = np.cumsum([0, *(round(f * len(order)) for f in h.split[:2])])
        parts = {"train": order[:bounds[1]], "val": order[bounds[1]:bounds[2]], "test": order[bounds[2]:]}
        parts["train"] = parts["train"][:max(1, round(h.train_fraction * len(parts["train"])))]
        self.volume_fraction = {s: drawn["volume_fraction"][rows] for s, rows in parts.items()}
        self.splits = {s: TensorRows(images[torch.as_tensor(np.sort(rows))][:, None]) for s, rows in parts.items()}
