"""Test error on polymorphs apart from the rest (structure datasets).

A composition model gives every polymorph of a formula the same prediction; a
structure-aware one need not. After testing, this logs ``test/mae_polymorphs``
(structures whose reduced formula has another structure in the data),
``test/mae_unique_formula`` and their counts, from the datamodule's
``polymorph_mask("test")`` and the absolute error of each test row.

Each test batch's rows come from the test loader's sampler, so the errors are
tied to dataset rows on every process; under DDP the (row, error) pairs are
gathered from all ranks and a row seen twice (the sampler pads the last
batches so every rank has as many) is counted once.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from callbacks.mlflow_run import mlflow_logger


class PolymorphMetrics(pl.Callback):
    def _active(self, trainer) -> bool:
        return hasattr(trainer.datamodule, "polymorph_mask")

    def on_test_epoch_start(self, trainer, pl_module):
        self._rows: list[torch.Tensor] = []
        self._errors: list[torch.Tensor] = []
        loader = trainer.test_dataloaders
        self._batches = list(iter(loader.sampler)) if self._active(trainer) else []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self._active(trainer) or outputs is None:
            return
        self._rows.append(torch.as_tensor(self._batches[batch_idx]).reshape(-1))
        self._errors.append((outputs.detach().reshape(-1) - batch[1].reshape(-1)).abs().float().cpu())

    def on_test_epoch_end(self, trainer, pl_module):
        if not self._active(trainer) or not self._rows:
            return
        rows, errors = torch.cat(self._rows).numpy(), torch.cat(self._errors).numpy()
        if trainer.world_size > 1:
            gathered: list = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (rows, errors))
            rows = np.concatenate([g[0] for g in gathered])
            errors = np.concatenate([g[1] for g in gathered])
        rows, first = np.unique(rows, return_index=True)
        errors = errors[first]
        mask = trainer.datamodule.polymorph_mask("test")[rows]
        metrics = {"test/n_polymorphs": float(mask.sum()), "test/n_unique_formula": float((~mask).sum())}
        if mask.any():
            metrics["test/mae_polymorphs"] = float(errors[mask].mean())
        if (~mask).any():
            metrics["test/mae_unique_formula"] = float(errors[~mask].mean())
        for key, value in metrics.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        logger = mlflow_logger(trainer)
        if logger is not None and trainer.global_rank == 0:
            logger.log_metrics(metrics)
