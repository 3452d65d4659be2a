"""One LightningModule for crystal orientations from diffraction patterns (OMNet, dissertation ch. 6).

The net is injected (any ``nn.Module`` with a ``representation`` attribute naming one of
:data:`materials.orientations.REPRESENTATIONS`: ``euler``, ``quaternion`` or ``rot6d``); this module owns the
loss, the optimiser and the metrics. Targets arrive as fundamental-zone unit quaternions and are encoded in the
net's representation. Losses (Table 6.1), from the registry :data:`LOSSES`:

- ``mae`` / ``mse``: mean absolute / squared error of the outputs against the encoded target (for ``euler``
  the Bunge angles in radians, as the paper);
- ``mde``: mean disorientation (radians) under the 24 rotations of m-3m (:func:`materials.orientations.disorientation`);
- ``mae+mde`` (the paper's best) and ``mse+mde``: their sums.

Logged per stage: ``{stage}/loss``, ``{stage}/mde`` (mean disorientation, degrees), ``{stage}/mae`` (mean
absolute Bunge-angle error of the predicted orientation, degrees) and ``val/mde_best``; after testing also
``test/mde_median``, ``test/mde_p90`` and the per-angle MSEAE of Eq. 6.6–6.8 (``test/mseae_phi1``,
``test/mseae_Phi``, ``test/mseae_phi2``, degrees).
"""

from __future__ import annotations

import copy
from typing import Callable, Literal

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import CatMetric, MeanMetric, MinMetric

from lightning_modules.batchnorm import PreciseBatchNorm
from lightning_modules.optim import clip_gradients, configure
from lightning_modules.stages import check_resumed_schedule
from materials.orientations import REPRESENTATIONS, disorientation, mseae, quaternion_to_euler


def _mae(out, target, q_pred, q_true):
    return (out - target).abs().mean()


def _mse(out, target, q_pred, q_true):
    return ((out - target) ** 2).mean()


def _mde(out, target, q_pred, q_true):
    return disorientation(q_pred, q_true).mean()


LOSSES = {"mae": (_mae,), "mse": (_mse,), "mde": (_mde,), "mae+mde": (_mae, _mde), "mse+mde": (_mse, _mde)}


class OrientationRegressor(PreciseBatchNorm, pl.LightningModule):
    """Train an injected net to predict crystal orientations.

    Args:
        net: the architecture (``OMNet``), built by the config.
        loss: ``mae``, ``mse``, ``mde``, ``mae+mde`` (default, the paper's best) or ``mse+mde``.
        lr: Adam learning rate. lr_schedule: ``constant``, ``plateau`` (on ``val/mde``), ``onecycle``, ``cosine``.
        precise_bn: before each validation during training, recompute the batch-normalisation statistics as the
            average over this many training batches at the current weights (0: keep the running averages of the
            last ~10 batches; :mod:`lightning_modules.batchnorm`).
    """

    plateau_monitor, plateau_patience = "val/mde", 3  # the plateau schedule (lightning_modules/optim.py)

    def __init__(self, net: nn.Module, loss: Literal["mae", "mse", "mde", "mae+mde", "mse+mde"] = "mae+mde",
                 lr: float = 1e-3, weight_decay: float = 0.0,
                 lr_schedule: Literal["constant", "plateau", "onecycle", "cosine"] = "constant", precise_bn: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.net = net
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.terms = LOSSES[loss]
        self.representation = REPRESENTATIONS[net.representation]
        self.epoch_means = nn.ModuleDict({f"{s}_{m}": MeanMetric() for s in ("train", "val", "test")
                                          for m in ("mde", "mae")})
        self.val_mde_best = MinMetric()
        self.test_disorientation, self.test_mseae = CatMetric(), CatMetric()
        self.last_test_outputs: dict[str, torch.Tensor] | None = None

    def forward(self, x):
        return self.net(x)

    def predict_quaternions(self, x: torch.Tensor) -> torch.Tensor:
        """Unit quaternions (B, 4) of the orientations the net sees in patterns (B, 1, H, W)."""
        return self.representation.decode(self.net(x))

    def quaternion_predictor(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Patterns (B, 1, H, W) → unit quaternions (B, 4) from a frozen copy of the net as it is now, in its
        inference form where it has one (OMNet: batch normalisation folded, channels-last); the module's own
        weights and mode are untouched."""
        net = self.net.for_inference() if hasattr(self.net, "for_inference") else copy.deepcopy(self.net).eval()
        decode = self.representation.decode
        return lambda x: decode(net(x))

    def _step(self, batch, stage: str):
        x, q_true = batch
        out = self(x)
        target = self.representation.encode(q_true)
        q_pred = self.representation.decode(out)
        loss = sum(term(out, target, q_pred, q_true) for term in self.terms)
        with torch.no_grad():
            angles = torch.rad2deg(disorientation(q_pred.detach(), q_true))
            euler_err = torch.rad2deg(quaternion_to_euler(q_pred.detach()) - quaternion_to_euler(q_true)).abs()
        self.epoch_means[f"{stage}_mde"].update(angles)
        self.epoch_means[f"{stage}_mae"].update(euler_err)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test",
                 batch_size=len(x), sync_dist=stage != "train")
        return loss, q_pred.detach(), angles

    def _log_epoch(self, stage: str) -> dict[str, torch.Tensor]:
        values = {f"{stage}/{m}": self.epoch_means[f"{stage}_{m}"].compute() for m in ("mde", "mae")}
        for m in ("mde", "mae"):
            self.epoch_means[f"{stage}_{m}"].reset()
        self.log_dict(values, prog_bar=stage == "val")
        return values

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")[0]

    def on_train_epoch_end(self):
        self._log_epoch("train")

    def on_train_start(self):
        check_resumed_schedule(self)
        self.val_mde_best.reset()

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_validation_epoch_end(self):
        values = self._log_epoch("val")
        if not self.trainer.sanity_checking:
            self.val_mde_best.update(values["val/mde"])
            self.log("val/mde_best", self.val_mde_best.compute(), prog_bar=True)

    def test_step(self, batch, batch_idx):
        _, q_pred, angles = self._step(batch, "test")
        self.test_disorientation.update(angles)
        self.test_mseae.update(torch.rad2deg(mseae(q_pred, batch[1])))

    def on_test_epoch_end(self):
        values = self._log_epoch("test")
        angles = self.test_disorientation.compute().float()
        per_angle = self.test_mseae.compute().float().reshape(-1, 3)
        self.test_disorientation.reset(), self.test_mseae.reset()
        values = {"test/mde_median": angles.quantile(0.5), "test/mde_p90": angles.quantile(0.9)}
        values.update({f"test/mseae_{name}": per_angle[:, i].mean() for i, name in enumerate(("phi1", "Phi", "phi2"))})
        self.log_dict(values)
        self.last_test_outputs = {"disorientation": angles.cpu(), "mseae": per_angle.cpu()}

    def predict_step(self, batch, batch_idx):
        return self.predict_quaternions(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def configure_optimizers(self):
        return configure(self)

    configure_gradient_clipping = clip_gradients  # fused Adam clips under bf16 too
