"""A moving average of the weights, for every task: ``ema.decay`` (0, the default, turns it off).

Lightning's ``EMAWeightAveraging`` keeps an exponential moving average of the parameters and buffers,
validates it, writes it as the checkpoint's weights (the training weights beside them, for resuming) and
leaves it in the module when training ends. So the best checkpoint, the test after fitting, ``make predict``
and the logged model all use the average.

One change: Lightning 2.6 also restores its training weights when a *test* loads a checkpoint
(``trainer.test(ckpt_path="best")`` after fitting calls every callback's ``on_load_checkpoint``), so the run
would test the weights it did not validate. Outside fitting this callback leaves the checkpoint's weights,
the average, where they are. And its averaging function is a picklable object, not torch's closure, so a
``ddp_spawn`` run (Optuna's DDP trials) can send the callback to its processes.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMAUpdate:
    """``decay · average + (1 − decay) · weights``: torch's ``get_ema_avg_fn``, as an object that pickles."""

    def __init__(self, decay: float):
        self.decay = decay

    def __call__(self, average: torch.Tensor, weights: torch.Tensor, num_averaged) -> torch.Tensor:
        return self.decay * average + (1.0 - self.decay) * weights


class WeightEMA(EMAWeightAveraging):
    """Validate, checkpoint and test ``decay``'s moving average of the weights (see the module's docstring).

    Args:
        decay: weight of the old average at each optimizer step (0.999: about the last 1,000 steps); 0 is off.
        update_starting_at_step: steps before the average starts (it starts as a copy of the weights then).
    """

    def __init__(self, decay: float = 0.0, update_starting_at_step: int | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema.decay must be in [0, 1), got {decay}")
        super().__init__(decay=decay, update_starting_at_step=update_starting_at_step)
        self.decay = decay
        self._kwargs["avg_fn"] = EMAUpdate(decay)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
