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


def _bucketed(groups, batch_size=4, shuffle=True, seed=0):
    from datamodules.batches import BucketedBatches

    return BucketedBatches(torch.as_tensor(groups), batch_size, shuffle, seed)


def test_bucketed_batches_hold_one_element_count_and_every_row_once_per_epoch():
    counts = torch.tensor([2, 3, 2, 4, 3, 2, 2, 5, 3, 2, 4, 2, 7])
    sampler = _bucketed(counts)
    epochs = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 6  # 6 binaries: 2 batches; 3 ternaries, 2 quaternaries, 5, 7: 1 each
        assert all(len(set(counts[b].tolist())) == 1 for b in batches)
        assert sorted(torch.cat(batches).tolist()) == list(range(len(counts)))
        epochs.append(torch.cat(batches))
    assert not torch.equal(*epochs)  # reshuffled each epoch
    sampler.set_epoch(0)
    assert torch.equal(torch.cat(list(sampler)), epochs[0])  # seeded: a resumed epoch sees the same batches


def test_bucketed_batches_shard_without_overlap_under_ddp(monkeypatch):
    from datamodules.batches import BucketedBatches

    counts = torch.randint(2, 6, (101,), generator=torch.Generator().manual_seed(0))
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(BucketedBatches, "_shard", lambda self, rank=rank: (rank, 2))
        sampler = _bucketed(counts, batch_size=8)
        sampler.set_epoch(3)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler)
    assert len(shards[0]) == len(shards[1])  # equal step counts, or DDP hangs
    rows = [set(torch.cat(s).tolist()) for s in shards]
    assert not rows[0] & rows[1]
    assert len(rows[0] | rows[1]) >= 101 - 8  # at most the one batch that does not divide evenly is left out


def test_a_composition_datamodule_buckets_training_batches_by_element_count(tmp_path):
    from datamodules.composition import CompositionDataModule

    data = tmp_path / "c.csv"
    formulas = ["NaCl", "Fe2O3", "LiFePO4", "MgAl2O4", "CaTiO3", "KCl", "LiCoO2", "BaTiO3", "SrTiO3", "NaNbO3",
                "ZnO", "GaAs", "InP", "CuInSe2", "CdTe", "SiC", "AlN", "TiO2", "ZrO2", "Li2MnSiO4"]
    data.write_text("formula,target\n" + "\n".join(f"{f},{-i / 10}" for i, f in enumerate(formulas)))
    dm = CompositionDataModule(str(data), split="random", batching="by_element_count", batch_size=3,
                               val_fraction=0.1, test_fraction=0.1)
    dm.setup()
    counts = (torch.from_numpy(dm.compositions["train"][0]) > 0).sum(1)
    x_train = dm.splits["train"].tensors[0]
    seen = []
    for x, _ in dm.train_dataloader():
        assert len(set((x > 0).sum(1).tolist())) == 1
        seen.append(x)
    assert len(torch.cat(seen)) == len(x_train) and sorted(counts.tolist()) == sorted((torch.cat(seen) > 0).sum(1).tolist())
