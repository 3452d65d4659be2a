"""The train/val stage hooks that every supervised LightningModule here shares.

A module mixes :class:`StagedMetrics` in before ``LightningModule`` and provides
``train_metrics`` / ``val_metrics`` (torchmetrics collections with the stage as prefix), ``val_best``
(a ``MinMetric`` or ``MaxMetric``), the class attribute ``best_metric`` (``"val/mae"``, ``"val/acc"``)
and ``_step(batch, metrics, stage) -> (loss, output)``. Epoch-level metrics are computed once per
epoch (synchronised across DDP processes by torchmetrics); ``<best_metric>_best`` is logged after every
validation outside the sanity check, as lightning-hydra-template does.
"""

from __future__ import annotations


class StagedMetrics:
    best_metric: str

    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_metrics, "train")[0]

    def on_train_epoch_end(self):
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self):
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.val_best.update(values[self.best_metric])
            self.log(f"{self.best_metric}_best", self.val_best.compute(), prog_bar=True)

    def on_train_start(self):
        self.val_best.reset()
