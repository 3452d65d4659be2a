"""datamodules.batches: whole-tensor batches that cover every row once per epoch."""

import torch

from datamodules.batches import ShuffledBatches, TensorRows, batch_loader


def test_every_row_once_per_epoch_and_order_depends_on_epoch():
    x = torch.arange(103, dtype=torch.float32).unsqueeze(1)
    loader = batch_loader(TensorRows(x, x * 2), batch_size=10, shuffle=True, seed=4)
    loader.sampler.set_epoch(0)
    first = torch.cat([xb for xb, _ in loader]).squeeze(1)
    again = torch.cat([xb for xb, _ in loader]).squeeze(1)
    loader.sampler.set_epoch(1)
    second = torch.cat([xb for xb, yb in loader]).squeeze(1)
    assert sorted(first.tolist()) == list(range(103)) and len(loader) == 11
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_unshuffled_batches_keep_order():
    sampler = ShuffledBatches(7, 3, shuffle=False)
    assert [b.tolist() for b in sampler] == [[0, 1, 2], [3, 4, 5], [6]]
