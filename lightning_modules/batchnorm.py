"""Batch-normalisation statistics measured on many training batches at fixed weights ("precise BN").

During training a BatchNorm layer keeps an exponential average of the last ~10 batches' statistics
(momentum 0.1). When every training batch is measured under its own randomly drawn noise model (OMNet's
randomised measurements), the statistics used at evaluation then follow the last few draws, and validation
swings from epoch to epoch with the weights barely moving. Recomputing the statistics as a plain average over
many batches, with the weights of the moment, removes that noise from the evaluation. (Measured on OMNet's CPU
profile: no gain, and its validation still swung; docs/results/ebsd.md.)

:class:`PreciseBatchNorm` does it before each validation of a fit for a LightningModule with a ``precise_bn``
hyperparameter (the number of training batches; 0: off) whose batches are ``(inputs, targets, ...)``.
"""
from __future__ import annotations

from itertools import islice
from typing import Callable, Iterable

import torch
from torch import nn


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm_statistics(module: nn.Module, batches: Iterable, forward: Callable[[object], object],
                                   n_batches: int) -> int:
    """Reset every BatchNorm layer's running mean and variance and set them to the average over ``n_batches``
    forward passes (``forward(batch)``, training mode, no gradients). The module's mode and the layers'
    momenta are restored. Returns the number of batches used (0: no BatchNorm layer, nothing changed)."""
    layers = batchnorm_layers(module)
    if not layers or n_batches <= 0:
        return 0
    momenta, was_training = [bn.momentum for bn in layers], module.training
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the batches that follow
    module.train()
    used = 0
    try:
        for batch in islice(batches, n_batches):
            forward(batch)
            used += 1
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        module.train(was_training)
    if used == 0:
        raise ValueError("no batch to recompute the batch-normalisation statistics on")
    return used


class PreciseBatchNorm:
    """LightningModule mixin: before each validation during a fit (not the sanity check), the batch-normalisation
    statistics are recomputed over ``hparams.precise_bn`` batches of the training data at the current weights,
    so the validation, the checkpoint saved after it and the final model use them."""

    def on_validation_start(self):
        n_batches = self.hparams.get("precise_bn", 0)
        trainer = self.trainer
        if not n_batches or trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        loader = trainer.datamodule.train_dataloader() if trainer.datamodule else trainer.train_dataloader

        def forward(batch):
            with trainer.precision_plugin.forward_context():
                self(self.transfer_batch_to_device(batch, self.device, 0)[0])
        recompute_batchnorm_statistics(self, loader, forward, n_batches)
