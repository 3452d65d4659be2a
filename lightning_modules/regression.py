"""One LightningModule for scalar property regression (ElemNet, IRNet, ...).

The net is injected (any ``nn.Module`` mapping features to one value); this
module owns only the loss, the optimiser and the metrics. It logs
``{stage}/{metric}`` and ``val/mae_best``, and keeps the last test predictions
for the parity plot and error CDF callbacks.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import CatMetric, MeanAbsoluteError, MeanSquaredError, MetricCollection, MinMetric, R2Score

from lightning_modules.stages import StagedMetrics

LOSSES: dict[str, type[nn.Module]] = {"mae": nn.L1Loss, "mse": nn.MSELoss, "huber": nn.HuberLoss}


def _plateau(optimizer, module):
    return {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5),
            "monitor": "val/mae"}


def _onecycle(optimizer, module):
    steps = module.trainer.estimated_stepping_batches
    if steps < 4:  # too short to warm up and anneal: constant rate
        return None
    # at least two warm-up steps: OneCycleLR divides by (pct_start * steps - 1)
    pct_start = min(0.5, max(0.1, 2.0 / steps))
    return {"scheduler": torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=module.hparams.lr, total_steps=steps, pct_start=pct_start), "interval": "step"}


def _cosine(optimizer, module):
    steps = module.trainer.estimated_stepping_batches
    return {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps), "interval": "step"}


SCHEDULES = {"constant": None, "plateau": _plateau, "onecycle": _onecycle, "cosine": _cosine}


class PropertyRegressor(StagedMetrics, pl.LightningModule):
    """Train an injected net to predict one property (eV/atom for ΔHf).

    Args:
        net: the architecture (``ElemNet``, ``IRNet``, ...), built by the config.
        loss: ``mae`` (the papers'), ``mse`` or ``huber``.
        lr: Adam learning rate (1e-4 in the papers).
        lr_schedule: ``constant`` (the papers'), ``plateau``, ``onecycle`` or ``cosine``.
    """

    best_metric = "val/mae"

    def __init__(self, net: nn.Module, loss: Literal["mae", "mse", "huber"] = "mae", lr: float = 1e-4,
                 weight_decay: float = 0.0,
                 lr_schedule: Literal["constant", "plateau", "onecycle", "cosine"] = "constant"):
        super().__init__()
        self.save_hyperparameters()
        self.net = net
        self.loss_fn = LOSSES[loss]()
        metrics = MetricCollection({"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False),
                                    "r2": R2Score()})
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_best = MinMetric()
        self.test_pred, self.test_true = CatMetric(), CatMetric()
        self.last_test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x):
        return self.net(x)

    def _step(self, batch, metrics, stage: str):
        x, y = batch
        pred = self(x)
        loss = self.loss_fn(pred, y)
        metrics.update(pred.detach().squeeze(1), y.squeeze(1))
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test",
                 batch_size=len(y), sync_dist=stage != "train")
        return loss, pred

    def test_step(self, batch, batch_idx):
        _, pred = self._step(batch, self.test_metrics, "test")
        self.test_pred.update(pred.squeeze(1))
        self.test_true.update(batch[1].squeeze(1))
        return pred.squeeze(1)  # for callbacks that score subsets of the test rows (PolymorphMetrics)

    def on_test_epoch_end(self):
        values = self.test_metrics.compute()
        self.test_metrics.reset()
        pred, true = self.test_pred.compute().float(), self.test_true.compute().float()
        self.test_pred.reset(), self.test_true.reset()
        abs_err = (pred - true).abs()
        values["test/ae_p50"] = abs_err.quantile(0.5)
        values["test/ae_p90"] = abs_err.quantile(0.9)
        # MAE in % of the mean |target| (Yang et al.'s "% of the mean"; for localization, whose targets are
        # strains over the applied strain (mean 1), this is their mean absolute strain error, MASE)
        values["test/mae_pct"] = 100 * abs_err.mean() / true.abs().mean().clamp_min(1e-12)
        self.log_dict(values)
        self.last_test_outputs = (pred.cpu(), true.cpu())

    def predict_step(self, batch, batch_idx):
        return self(batch[0] if isinstance(batch, (tuple, list)) else batch).squeeze(1)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = SCHEDULES[self.hparams.lr_schedule]
        scheduler = schedule(optimizer, self) if schedule is not None else None
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
