"""The optimiser and learning-rate schedules of every LightningModule here, in one place.

A module has the hyperparameters ``lr``, ``weight_decay`` and ``lr_schedule`` (a key of
:data:`SCHEDULES`) and the class attributes ``plateau_monitor`` (the validation metric the ``plateau``
schedule watches; lower is better) and ``plateau_patience``; its ``configure_optimizers`` returns
``configure(self)`` and its ``configure_gradient_clipping`` is :func:`clip_gradients`.
"""

from __future__ import annotations

import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision


def adam(module) -> torch.optim.Adam:
    """Adam over the module's trainable parameters with its ``lr`` and ``weight_decay`` hyperparameters, fused
    into one kernel on CPUs and GPUs: on 2 CPU cores IRNet-17's optimizer step takes 7 ms instead of 29 ms
    (a fifth of a training step at batch 512 before), Roost's 0.9 ms instead of 5.5 ms. Not fused only where
    the trainer clips gradients of a float16 loss scaled by a grad scaler: a fused Adam unscales them itself,
    after the clip would have run (:func:`clip_gradients`)."""
    params = [p for p in module.parameters() if p.requires_grad]
    trainer = module._trainer  # None outside a Trainer
    clips_scaled = (trainer is not None and bool(trainer.gradient_clip_val) and _scaler(trainer) is not None)
    return torch.optim.Adam(params, lr=module.hparams.lr, weight_decay=module.hparams.weight_decay,
                            fused=module.device.type in ("cpu", "cuda") and not clips_scaled)


def _scaler(trainer):
    """The grad scaler of float16 mixed precision (None for bf16-mixed and float32: nothing scales the loss)."""
    plugin = trainer.precision_plugin
    return plugin.scaler if isinstance(plugin, MixedPrecision) else None


def clip_gradients(module, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
    """A module's ``configure_gradient_clipping``: Lightning's clipping, which under mixed precision refuses
    every fused optimizer because with float16 it unscales the gradients itself. Under bf16-mixed nothing is
    scaled, so the gradients are clipped as they are and Adam stays fused."""
    trainer = module.trainer
    if isinstance(trainer.precision_plugin, MixedPrecision) and _scaler(trainer) is None:
        Precision.clip_gradients(trainer.precision_plugin, optimizer, gradient_clip_val or 0.0,
                                 gradient_clip_algorithm or "norm")
    else:
        module.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)


def _plateau(optimizer, module):
    return {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,
                                                                    patience=module.plateau_patience),
            "monitor": module.plateau_monitor}


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


#: ``lr_schedule`` → the scheduler config for Lightning (None: a constant rate)
SCHEDULES = {"constant": None, "plateau": _plateau, "onecycle": _onecycle, "cosine": _cosine}


def configure(module):
    """What ``configure_optimizers`` returns: Adam, with the module's schedule when it has one."""
    optimizer = adam(module)
    schedule = SCHEDULES[module.hparams.lr_schedule]
    config = schedule(optimizer, module) if schedule is not None else None  # None: too short to schedule
    return optimizer if config is None else {"optimizer": optimizer, "lr_scheduler": config}
