"""Every run's checkpoint: ``last.ckpt`` follows every epoch, also after epochs without a new best."""

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from callbacks import EveryEpochCheckpoint


class WorseEveryEpoch(BoringModel):
    """Its validation score is best after the first epoch and worse after every later one."""

    def validation_step(self, batch, batch_idx):
        self.log("val/score", float(self.current_epoch))


def _fit(callback_class, folder, **checkpoint_options) -> tuple[int, list[str]]:
    """Three epochs; the epoch ``last.ckpt`` holds and the files left in ``folder``."""
    checkpoint = callback_class(dirpath=folder, monitor="val/score", mode="min", save_last=True,
                                filename="best-{epoch:03d}", enable_version_counter=False, **checkpoint_options)
    trainer = pl.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, callbacks=[checkpoint],
                         logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(WorseEveryEpoch())
    return torch.load(folder / "last.ckpt", weights_only=False)["epoch"], sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("save_on_train_epoch_end", [False, True])
def test_last_checkpoint_follows_every_epoch_when_the_best_does_not_move(tmp_path, save_on_train_epoch_end):
    epoch, files = _fit(EveryEpochCheckpoint, tmp_path, save_on_train_epoch_end=save_on_train_epoch_end)
    assert epoch == 2 and files == ["best-epoch=000.ckpt", "last.ckpt"]


def test_lightnings_own_checkpoint_keeps_the_last_of_the_best_epoch(tmp_path):
    """Why the subclass exists: Lightning alone leaves ``last.ckpt`` at the best epoch (if this fails, Lightning
    changed, and the subclass may go)."""
    epoch, _ = _fit(ModelCheckpoint, tmp_path)
    assert epoch == 0
