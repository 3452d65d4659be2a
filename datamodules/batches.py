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

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def _batches(self) -> list[torch.Tensor]:
        """This epoch's batches of row indices, before sharding."""
        order = torch.randperm(self.n, generator=self._generator()) if self.shuffle else torch.arange(self.n)
        return list(order.split(self.batch_size))

    def _n_batches(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        batches = self._batches()
        rank, world = self._shard()
        if world > 1:  # equal batch counts on every rank, or DDP would hang
            per_rank = len(batches) // world if self.shuffle else -(-len(batches) // world)
            batches = (batches * world)[rank::world][:per_rank]
        return iter(batches)

    def __len__(self) -> int:
        batches = self._n_batches()
        rank, world = self._shard()
        if world > 1:
            return batches // world if self.shuffle else -(-batches // world)
        return batches


class BucketedBatches(ShuffledBatches):
    """Batches whose rows share one group (e.g. a composition's element count), for set models such as Roost
    that pad every row of a batch to its largest set: one 7-element composition in a batch of binaries costs
    the whole batch (7/2)^2 ~ 12x the pair attention.

    Each epoch the rows of every group are shuffled and cut into batches, and the batches of all groups are
    shuffled together (seeded by ``seed + epoch``), so every row comes exactly once per epoch; a group's
    last batch may be short. DDP sharding is :class:`ShuffledBatches`'.
    """

    def __init__(self, groups: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0):
        super().__init__(len(groups), batch_size, shuffle, seed)
        self.members = [torch.nonzero(groups == g).flatten() for g in torch.unique(groups)]

    def _batches(self) -> list[torch.Tensor]:
        if not self.shuffle:
            return [b for rows in self.members for b in rows.split(self.batch_size)]
        g = self._generator()
        batches = [b for rows in self.members for b in rows[torch.randperm(len(rows), generator=g)].split(self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g)]

    def _n_batches(self) -> int:
        return sum(-(-len(rows) // self.batch_size) for rows in self.members)


def batch_loader(dataset: TensorRows, batch_size: int, shuffle: bool, seed: int = 0,
                 groups: torch.Tensor | None = None) -> DataLoader:
    """Whole-tensor batches of ``dataset``; with ``groups`` (one label per row) each batch holds one group."""
    sampler = (ShuffledBatches(len(dataset), batch_size, shuffle, seed) if groups is None
               else BucketedBatches(groups, batch_size, shuffle, seed))
    return DataLoader(dataset, sampler=sampler, batch_size=None)


class SplitLoaders:
    """The four loaders of a datamodule whose ``setup`` fills ``self.splits`` (train/val/test datasets of rows).

    Mixed in before ``LightningDataModule``; needs ``batch_size``, ``eval_batch_size`` and ``seed`` hparams.
    """

    def batch_groups(self) -> torch.Tensor | None:
        """One label per training row when a training batch must hold rows of one label only (default: none).
        Validation and test keep their row order (callbacks score test rows by position)."""
        return None

    def train_dataloader(self):
        return batch_loader(self.splits["train"], self.hparams.batch_size, shuffle=True, seed=self.hparams.seed,
                            groups=self.batch_groups())

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
