"""Fault injection for tests: a callback that raises after the first training epoch."""

import lightning.pytorch as pl


class CrashAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        raise RuntimeError("injected crash after epoch 0")


class CrashOnFoldWhileEnvSet(pl.Callback):
    """Raises in cross-validation fold ``$MATDL_CRASH_FOLD`` while that variable is set (a crash to resume from)."""

    def on_train_epoch_end(self, trainer, pl_module):
        import os

        fold = os.environ.get("MATDL_CRASH_FOLD")
        if fold is not None and trainer.datamodule.hparams.fold == int(fold):
            raise RuntimeError(f"injected crash in fold {fold}")


class CrashInSecondEpoch(pl.Callback):
    """Raises at the first batch of epoch 1, after epoch 0's checkpoints were written (a kill to resume from)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1:
            raise RuntimeError("injected crash in epoch 1")


class InterruptAfterFirstEpoch(pl.Callback):
    """Ctrl-C after epoch 0's checkpoints: the KeyboardInterrupt Python raises on SIGINT, at a known step (the
    start of epoch 1; checkpoints are written at the end of an epoch, after every other callback's hook)."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


class InterruptWhileEnvSet(InterruptAfterFirstEpoch):
    """Ctrl-C at the start of epoch 1 while ``$MATDL_INTERRUPT`` is set (a run that the same command resumes)."""

    def on_train_epoch_start(self, trainer, pl_module):
        import os

        if os.environ.get("MATDL_INTERRUPT"):
            super().on_train_epoch_start(trainer, pl_module)
