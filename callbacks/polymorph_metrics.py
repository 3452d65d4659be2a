"""Test error on polymorphs apart from the rest (structure datasets).

A composition model gives every polymorph of a formula the same prediction; a
structure-aware one need not. After testing, this logs ``test/mae_polymorphs``
(structures whose reduced formula has another structure in the data),
``test/mae_unique_formula`` and their counts, from the datamodule's
``polymorph_mask("test")`` and the module's test predictions.
"""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import numpy as np

from callbacks.mlflow_run import mlflow_logger


class PolymorphMetrics(pl.Callback):
    def on_test_end(self, trainer, pl_module):
        outputs = getattr(pl_module, "last_test_outputs", None)
        dm = trainer.datamodule
        if outputs is None or not hasattr(dm, "polymorph_mask"):
            return
        if trainer.world_size > 1:  # gathered predictions are not in dataset order
            warnings.warn("PolymorphMetrics: skipped under DDP (predictions are gathered out of order)", stacklevel=1)
            return
        pred, true = (t.numpy() for t in outputs)
        mask = dm.polymorph_mask("test")
        if len(mask) != len(pred):
            return
        err = np.abs(pred - true)
        metrics = {"test/n_polymorphs": float(mask.sum()), "test/n_unique_formula": float((~mask).sum())}
        if mask.any():
            metrics["test/mae_polymorphs"] = float(err[mask].mean())
        if (~mask).any():
            metrics["test/mae_unique_formula"] = float(err[~mask].mean())
        for key, value in metrics.items():
            trainer.callback_metrics[key] = value
        logger = mlflow_logger(trainer)
        if logger is not None and trainer.global_rank == 0:
            logger.log_metrics(metrics)
