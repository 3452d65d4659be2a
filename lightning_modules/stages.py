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
        check_resumed_schedule(self)
        self.val_best.reset()


def check_resumed_schedule(module) -> None:
    """Stop before the first step, naming the checkpoint, when a resumed one-cycle schedule cannot cover
    this run (it would fail mid-epoch with torch's ``Tried to step N times`` or ``KeyError: 'initial_lr'``).
    A run resumed with fewer epochs than it started with keeps its schedule and just ends earlier."""
    from torch.optim.lr_scheduler import OneCycleLR

    trainer = module.trainer
    if not trainer.ckpt_path:
        return
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if not isinstance(scheduler, OneCycleLR):
            continue
        steps = trainer.estimated_stepping_batches
        if "max_lr" not in scheduler.optimizer.param_groups[0]:
            why = "was trained without a one-cycle learning-rate schedule"
        elif steps > scheduler.total_steps:
            why = (f"holds a one-cycle learning-rate schedule of {scheduler.total_steps} steps, and this run takes "
                   f"{steps} (more epochs, or more data, than it started with)")
        else:
            continue
        raise ValueError(f"cannot resume {trainer.ckpt_path}: it {why}. Resume it with the options it started "
                         "with, or start a new run from its weights (--model.init_args.init_from=<checkpoint> "
                         "for the regression tasks)")

