"""Whole-tensor mini-batches: one index per batch, never a Python call per row."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class TensorRows(Dataset):
    """Tensors indexed by a whole list of rows at once."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, rows):
        rows = torch.as_tensor(rows)
        return tuple(t[rows] for t in self.tensors)


class ShuffledBatches(Sampler):
    """Batches of row indices, reshuffled each epoch by a seeded generator.

    Lightning calls ``set_epoch`` before every epoch, so a resumed run sees the
    same order an uninterrupted one would. Under DDP each process takes every ``world_size``-th batch (same
    permutation everywhere, so the shards never overlap).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self) -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        rank, world = self._shard()
        batches = list(order.split(self.batch_size))
        if world > 1:  # equal batch counts on every rank, or DDP would hang
            per_rank = len(batches) // world if self.shuffle else -(-len(batches) // world)
            batches = (batches * world)[rank::world][:per_rank]
        return iter(batches)

    def __len__(self) -> int:
        batches = -(-self.n // self.batch_size)
        rank, world = self._shard()
        if world > 1:
            return batches // world if self.shuffle else -(-batches // world)
        return batches


def batch_loader(dataset: TensorRows, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    return DataLoader(dataset, sampler=ShuffledBatches(len(dataset), batch_size, shuffle, seed), batch_size=None)


class SplitLoaders:
    """The four loaders of a datamodule whose ``setup`` fills ``self.splits`` (train/val/test datasets of rows).

    Mixed in before ``LightningDataModule``; needs ``batch_size``, ``eval_batch_size`` and ``seed`` hparams.
    """

    def train_dataloader(self):
        return batch_loader(self.splits["train"], self.hparams.batch_size, shuffle=True, seed=self.hparams.seed)

    def val_dataloader(self):
        return batch_loader(self.splits["val"], self.hparams.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return batch_loader(self.splits["test"], self.hparams.eval_batch_size, shuffle=False)

    def predict_dataloader(self):
        return self.test_dataloader()


def data_device(datamodule) -> "torch.device":
    """Where a datamodule with a ``data_device`` hparam (``auto`` | ``cpu``) keeps its tensors: this rank's
    training device under ``auto`` (the trainer is None when the datamodule is used alone: then the CPU)."""
    trainer = datamodule.trainer
    if datamodule.hparams.data_device == "cpu" or trainer is None:
        return torch.device("cpu")
    return trainer.strategy.root_device
