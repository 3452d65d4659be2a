"""One LightningModule for classification (PADNet's phase regions, ...).

The net is injected (any ``nn.Module`` taking the batch's inputs and returning logits); this
module owns the loss, the optimiser and the metrics. A batch is ``(*inputs, label)``. It logs
``{stage}/loss``, ``{stage}/acc`` (fraction of samples classified correctly, the paper's
accuracy), ``{stage}/f1`` (macro F1, which weighs the small classes as much as the large),
``val/acc_best``, and keeps the last test confusion matrix (rows: true class, columns:
predicted) for the confusion-matrix callback.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from lightning_modules.optim import clip_gradients, configure
from lightning_modules.stages import StagedMetrics

LOSSES: dict[str, type[nn.Module] | partial] = {
    "cross_entropy": nn.CrossEntropyLoss,  # softmax cross entropy (7.4.1)
    "label_smoothing": partial(nn.CrossEntropyLoss, label_smoothing=0.1),
}



class PhaseClassifier(StagedMetrics, pl.LightningModule):
    """Train an injected net to classify samples into ``n_classes``.

    Args:
        net: the architecture (``PADNet``), built by the config.
        n_classes: classes (8 phase regions); the CLI links it (and the net's) from the datamodule's ``n_classes``.
        loss: ``cross_entropy`` (the paper's) or ``label_smoothing``.
        lr: Adam learning rate (1e-3 in 7.4.1). weight_decay: L2 on the weights (1e-4 in 7.4.1, as Adam's
            weight decay).
        lr_schedule: ``constant`` (the paper's), ``plateau``, ``onecycle`` or ``cosine``.
    """

    best_metric = "val/acc"
    plateau_monitor, plateau_patience = "val/loss", 5  # the plateau schedule (lightning_modules/optim.py)

    def __init__(self, net: nn.Module, n_classes: int = 8, loss: Literal["cross_entropy", "label_smoothing"] = "cross_entropy",
                 lr: float = 1e-3, weight_decay: float = 1e-4,
                 lr_schedule: Literal["constant", "plateau", "onecycle", "cosine"] = "constant"):
        super().__init__()
        self.save_hyperparameters()
        self.net = net
        self.loss_fn = LOSSES[loss]()
        metrics = MetricCollection({"acc": MulticlassAccuracy(n_classes, average="micro"),
                                    "f1": MulticlassF1Score(n_classes, average="macro")})
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_best = MaxMetric()
        self.test_confusion = MulticlassConfusionMatrix(n_classes)
        self.last_test_confusion: torch.Tensor | None = None

    def forward(self, *inputs):
        return self.net(*inputs)

    def _step(self, batch, metrics, stage: str):
        *inputs, y = batch
        logits = self(*inputs)
        loss = self.loss_fn(logits, y)
        metrics.update(logits.detach(), y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test",
                 batch_size=len(y), sync_dist=stage != "train")
        return loss, logits

    def test_step(self, batch, batch_idx):
        _, logits = self._step(batch, self.test_metrics, "test")
        self.test_confusion.update(logits, batch[-1])

    def on_test_epoch_end(self):
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()
        self.last_test_confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def predict_step(self, batch, batch_idx):
        inputs = batch[:-1] if isinstance(batch, (tuple, list)) else (batch,)
        return self(*inputs).softmax(-1)

    def configure_optimizers(self):
        return configure(self)

    configure_gradient_clipping = clip_gradients  # fused Adam clips under bf16 too
