"""σ recalibrated on the validation split before testing, kept in the tested checkpoint.

For a regression run with a predictive standard deviation (``uncertainty: mc_dropout`` or ``ensemble``) and
``calibration`` not ``none``: at the start of testing, with the weights under test, the validation rows'
(mean, σ) are computed once and every method of :mod:`lightning_modules.calibration` is fitted on them; the
module's own method becomes its calibration (so the test's headline coverage and NLL are the calibrated ones,
beside ``test/uncalibrated/*`` and each method's ``test/calibrated_<method>/*``). After testing the calibration
is written into the checkpoint file that was tested (``best-…ckpt``), which ``make predict``, ``make screen``
and the logged MLflow model load: their σ and intervals are the calibrated ones.
"""

from __future__ import annotations

import os

import lightning.pytorch as pl
import torch

from lightning_modules.calibration import METHODS, SigmaCalibration


def validation_predictions(data, pl_module) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(mean, raw σ or None, true) of every validation row, in eval mode and float32, in row order.

    Computed once per weights under test: σ's calibration and the extrapolation scores both read them while one
    checkpoint is tested (for MC dropout or an ensemble a pass over the validation rows is many forward passes)."""
    trainer = pl_module._trainer
    key = (id(data), trainer.global_step, trainer.ckpt_path) if trainer is not None else None
    cached = getattr(pl_module, "_validation_predictions", None)
    if key is not None and cached is not None and cached[0] == key:
        return cached[1]
    was_training = pl_module.training
    pl_module.eval()
    means, stds, trues = [], [], []
    with torch.inference_mode(), torch.autocast(pl_module.device.type, enabled=False):
        for x, y in data.val_dataloader():
            mean, std = pl_module.raw_predict_with_std(x.to(pl_module.device))
            means.append(mean.float().cpu()), trues.append(y.float().cpu())
            stds.append(None if std is None else std.float().cpu())
    pl_module.train(was_training)
    std = None if stds[0] is None else torch.cat(stds).flatten()
    result = torch.cat(means).flatten(), std, torch.cat(trues).flatten()
    pl_module._validation_predictions = (key, result)
    return result


class UncertaintyCalibration(pl.Callback):
    """Fit σ's recalibration on the validation split before testing; keep it in the tested checkpoint."""

    def on_test_start(self, trainer, pl_module):
        hparams = pl_module.hparams
        if hparams.get("uncertainty", "none") == "none" or hparams.get("calibration", "none") == "none":
            return
        data = trainer.datamodule
        if data is None or not hasattr(data, "val_dataloader"):
            return
        mean, std, true = validation_predictions(data, pl_module)
        pl_module.calibration_alternatives = {m: SigmaCalibration.fit(mean, std, true, m) for m in METHODS}
        pl_module.calibration = pl_module.calibration_alternatives[hparams.calibration]

    def on_test_end(self, trainer, pl_module):
        path = trainer.ckpt_path
        if pl_module.calibration is None or not path or not os.path.isfile(path) or trainer.global_rank != 0:
            return
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        checkpoint["sigma_calibration"] = pl_module.calibration.state()
        partial = f"{path}.calibrating"
        torch.save(checkpoint, partial)
        os.replace(partial, path)  # never a half-written checkpoint
