"""The checkpoint every run keeps: the best by the task's metric, and ``last.ckpt`` after every epoch.

Lightning 2.6's ``ModelCheckpoint`` writes ``last.ckpt`` only at a step where it also kept a new best, so a run
killed after epochs without a new best resumed (``--ckpt_path last``) from its best epoch, not its last: a GAN
run resumed from epoch 3 trained 5 more epochs, none better by its swinging validation score, and wrote no
checkpoint at all. :class:`EveryEpochCheckpoint` writes ``last.ckpt`` whenever Lightning would have considered
saving (after each validation, or at each training epoch's end where it saves then), better or not.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class EveryEpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` follows every epoch (see the module's docstring)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_anyway(trainer, at_train_epoch_end=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_last_anyway(trainer, at_train_epoch_end=False)

    def _save_last_anyway(self, trainer: pl.Trainer, at_train_epoch_end: bool) -> None:
        # after a new best Lightning has saved at this step already, and then this skips
        if (self.save_last and not self._should_skip_saving_checkpoint(trainer)
                and self._should_save_on_train_epoch_end(trainer) == at_train_epoch_end):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
