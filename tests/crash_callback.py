"""Fault injection for tests: a callback that raises after the first training epoch."""

import lightning.pytorch as pl


class CrashAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        raise RuntimeError("injected crash after epoch 0")
