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

from lightning_modules.batchnorm import PreciseBatchNorm
from lightning_modules.calibration import SigmaCalibration
from lightning_modules.pretrained import load_net_weights
from lightning_modules.optim import clip_gradients, configure
from lightning_modules.stages import StagedMetrics
from lightning_modules.uncertainty import PREDICTIVE, dropout_layers, ensemble_members, gaussian_scores

LOSSES: dict[str, type[nn.Module]] = {"mae": nn.L1Loss, "mse": nn.MSELoss, "huber": nn.HuberLoss}


class PropertyRegressor(StagedMetrics, PreciseBatchNorm, pl.LightningModule):
    """Train an injected net to predict one property (eV/atom for ΔHf).

    Args:
        net: the architecture (``ElemNet``, ``IRNet``, ...), built by the config.
        loss: ``mae`` (the papers'), ``mse`` or ``huber``.
        lr: Adam learning rate (1e-4 in the papers).
        lr_schedule: ``constant`` (the papers'), ``plateau``, ``onecycle`` or ``cosine``.
        init_from: transfer learning: start fitting from this source's net weights (a checkpoint, an
            MLflow model URI, or ``best:<dataset>``, the last two resolved by the CLI: :mod:`cli.sources`), all layers
            trainable; several sources (comma-separated, or ``best<k>:<dataset>``) start an ensemble's members
            in turn (:mod:`lightning_modules.pretrained`).
        uncertainty: ``none``, ``mc_dropout`` (``mc_samples`` passes with dropout on) or ``ensemble``
            (``ensemble_size`` independently initialised copies of the net trained side by side);
            :mod:`lightning_modules.uncertainty`. Tests then log ``test/nll``, ``test/coverage_68``,
            ``test/coverage_95`` and a calibration plot, and predictions carry a standard deviation.
        calibration: how σ is recalibrated on the validation split before testing (``conformal`` or ``scale``:
            :mod:`lightning_modules.calibration`; ``none`` keeps the raw σ); the checkpoint keeps it, so
            predictions carry calibrated σ and intervals. ``test/coverage_*``, ``test/nll`` are then the calibrated
            scores, ``test/uncalibrated/*`` the raw σ's, ``test/calibrated_<method>/*`` each method's.
        precise_bn: before each validation during training, recompute the batch-normalisation statistics (nets
            that have them: the microstructure CNNs) over this many training batches at the current weights
            (:mod:`lightning_modules.batchnorm`; 0: the running averages of the last ~10 batches).
    """

    best_metric = "val/mae"
    plateau_monitor, plateau_patience = "val/mae", 5  # the plateau schedule (lightning_modules/optim.py)

    def __init__(self, net: nn.Module, loss: Literal["mae", "mse", "huber"] = "mae", lr: float = 1e-4,
                 weight_decay: float = 0.0,
                 lr_schedule: Literal["constant", "plateau", "onecycle", "cosine"] = "constant",
                 init_from: str | None = None,
                 uncertainty: Literal["none", "mc_dropout", "ensemble"] = "none", mc_samples: int = 30,
                 ensemble_size: int = 5, calibration: Literal["conformal", "scale", "none"] = "conformal",
                 precise_bn: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.net = net
        if uncertainty == "mc_dropout" and not dropout_layers(net):
            raise ValueError(f"uncertainty: mc_dropout needs dropout layers; {type(net).__name__} has none "
                             "(use uncertainty: ensemble)")
        # members[0] is the net itself; the others are re-initialised copies
        self.members = ensemble_members(net, ensemble_size, torch.initial_seed()) if uncertainty == "ensemble" else None
        self.loss_fn = LOSSES[loss]()
        self.row_loss_fn = LOSSES[loss](reduction="none")
        metrics = MetricCollection({"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False),
                                    "r2": R2Score()})
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_best = MinMetric()
        self.test_pred, self.test_true, self.test_std = CatMetric(), CatMetric(), CatMetric()
        self.last_test_outputs: tuple[torch.Tensor, ...] | None = None  # (pred, true[, std])
        self.transferred_from: str | None = None
        #: an ensemble whose members share a source net: they learn from bootstrap weights (_member_loss)
        self.members_start_equal = False
        # the local file of an ``init_from`` that is not one (best:<dataset>, an MLflow model): cli/sources.py
        self.source_checkpoint: str | None = None
        #: σ's recalibration (callbacks.UncertaintyCalibration fits it before testing; checkpoints keep it)
        self.calibration: SigmaCalibration | None = None
        self.calibration_alternatives: dict[str, SigmaCalibration] = {}

    def setup(self, stage: str) -> None:
        # before a resumed fit restores its checkpoint, which then overrides these weights
        if stage != "fit":
            return
        nets = list(self.members) if self.members is not None else [self.net]
        for net in nets:  # a net that starts from a published element table gets it from the data
            if getattr(net, "element_table", None):
                tables = getattr(self.trainer.datamodule, "element_table", None)
                if tables is None:
                    raise ValueError(f"{type(net).__name__} starts from the element table {net.element_table!r}: fit "
                                     "it with a datamodule that gives element tables (CompositionDataModule)")
                net.use_element_table(tables(net.element_table))
        if self.hparams.init_from:
            distinct = load_net_weights(nets, self.source_checkpoint or self.hparams.init_from)
            self.members_start_equal = self.members is not None and not distinct
            self.transferred_from = self.hparams.init_from

    def forward(self, x):
        """The point prediction (training, validation, screening): the net's, or the ensemble's mean."""
        if self.members is None:
            return self.net(x)
        return torch.stack([member(x) for member in self.members]).mean(0)

    def predict_with_std(self, x) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, standard deviation or None) of the predictive distribution, in eval mode.

        With ``mc_dropout`` the mean is that of ``mc_samples`` passes with dropout on. For ElemNet this
        is not the dropout-off prediction: dropout's extra variance raises the mean of every ReLU after
        it, so the dropout-off net's output shrinks towards zero (``make analyze`` on an SSUB transfer
        model, all 2,083 SSUB rows: slope 0.78 against the targets dropout-off, 1.02 for the mean of 30
        passes; MAE 0.289 against 0.127), which costs most on targets far from zero, as SSUB's are.
        Screening uses the dropout-off net (one pass); ``make predict`` the mean. The standard deviation is the
        calibrated σ' when the model has a calibration (:attr:`calibration`), else the raw one."""
        mean, std = self.raw_predict_with_std(x)
        if std is not None and self.calibration is not None:
            std = self.calibration.sigma(std)
        return mean, std

    def raw_predict_with_std(self, x) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, the net's own standard deviation or None), before any calibration."""
        return PREDICTIVE[self.hparams.uncertainty](self, x)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.calibration is not None:
            checkpoint["sigma_calibration"] = self.calibration.state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("sigma_calibration")
        self.calibration = SigmaCalibration.from_state(state) if state else None

    def _step(self, batch, metrics, stage: str):
        if stage == "train":
            return self._scored_step(batch, metrics, stage)
        # validation and test in float32 whatever the training precision: a bfloat16 output has 8 significant
        # bits (steps of 0.0078 eV/atom near -1.5), too coarse for the errors the tasks are judged by
        with torch.autocast(self.device.type, enabled=False):
            return self._scored_step(batch, metrics, stage)

    def _scored_step(self, batch, metrics, stage: str):
        x, y = batch
        std = None
        if stage == "train" and self.members is not None:  # each member learns from its own loss
            preds = [member(x) for member in self.members]
            loss = torch.stack([self._member_loss(p, y) for p in preds]).sum()
            pred = torch.stack(preds).mean(0)
        else:
            # validation scores what the test will: with mc_dropout the Monte Carlo mean, not the
            # dropout-off net, which for ElemNet is a different function (see predict_with_std)
            pred, std = self.raw_predict_with_std(x) if stage in ("val", "test") else (self(x), None)
            loss = self.loss_fn(pred, y)
        metrics.update(pred.detach().squeeze(1), y.squeeze(1))
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test",
                 batch_size=len(y), sync_dist=stage != "train")
        return loss, (pred, std)

    def _member_loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One ensemble member's training loss. Members drawn at random differ from their first step; members
        that start from one transferred net (``init_from`` a single net, or fewer sources than members) and see
        the same batches would stay one net, so each weighs the batch's rows by its own Poisson(1) draws (the online bootstrap, Oza &
        Russell 2001): every member fits its own resample of the training rows."""
        if not self.members_start_equal:
            return self.loss_fn(pred, y)
        weights = torch.poisson(torch.ones_like(y, dtype=torch.float32))
        return (weights * self.row_loss_fn(pred, y)).sum() / weights.sum().clamp_min(1.0)

    def test_step(self, batch, batch_idx):
        _, (pred, std) = self._step(batch, self.test_metrics, "test")
        self.test_pred.update(pred.squeeze(1))
        self.test_true.update(batch[1].squeeze(1))
        if std is not None:
            self.test_std.update(std.squeeze(1))
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
        self.last_test_outputs = (pred.cpu(), true.cpu())
        if self.hparams.uncertainty != "none":
            std = self.test_std.compute().float()
            raw = gaussian_scores(pred, std, true)
            values.update({f"test/{k}": v for k, v in raw.items()})
            for method, calibration in self.calibration_alternatives.items():
                values.update({f"test/calibrated_{method}/{k}": v
                               for k, v in calibration.scores(pred, std, true).items()})
            if self.calibration is not None:  # the headline scores are the intervals a user gets
                values.update({f"test/uncalibrated/{k}": v for k, v in raw.items()})
                values.update({f"test/{k}": v for k, v in self.calibration.scores(pred, std, true).items()})
                self.last_test_outputs += (self.calibration.sigma(std).cpu(), std.cpu())
            else:
                self.last_test_outputs += (std.cpu(),)
        self.test_std.reset()
        self.log_dict(values)

    def predict_step(self, batch, batch_idx):
        with torch.autocast(self.device.type, enabled=False):
            return self(batch[0] if isinstance(batch, (tuple, list)) else batch).squeeze(1)

    def configure_optimizers(self):
        return configure(self)

    configure_gradient_clipping = clip_gradients  # fused Adam clips under bf16 too
