"""The moving average of the weights (``ema.decay``): validated, checkpointed and tested in place of the weights."""

import pickle

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from callbacks import WeightEMA
from cli.train import main
from conftest import run_checkpoints, search_runs, task_args


class RecordsTestWeights(BoringModel):
    def validation_step(self, batch, batch_idx):
        self.log("val/score", float(self.current_epoch))  # the first epoch stays the best

    def on_test_start(self):
        self.tested = {k: v.detach().clone() for k, v in self.state_dict().items()}


def test_the_test_after_fitting_uses_the_average_the_checkpoint_holds(tmp_path):
    model = RecordsTestWeights()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min")
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=5, limit_val_batches=1, logger=False,
                         callbacks=[WeightEMA(decay=0.9), checkpoint], enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model)
    trainer.test(model, ckpt_path="best", verbose=False)
    saved = torch.load(checkpoint.best_model_path, weights_only=False)
    assert saved["state_dict"].keys() == model.tested.keys()
    for name, average in saved["state_dict"].items():
        assert torch.equal(model.tested[name], average), name  # Lightning alone would test current_model_state
    current = saved["current_model_state"]["layer.weight"]
    assert not torch.allclose(current, saved["state_dict"]["layer.weight"])  # five updates: the average lags


def test_the_callback_pickles_for_spawned_processes_and_averages_as_torch_does():
    """``ddp_spawn`` (Optuna's DDP trials) pickles the callbacks; torch's EMA function is a closure that does not."""
    from torch.optim.swa_utils import get_ema_avg_fn

    callback = pickle.loads(pickle.dumps(WeightEMA(decay=0.9)))
    average, weights = torch.randn(5), torch.randn(5)
    ours = callback._kwargs["avg_fn"](average, weights, torch.tensor(3))
    torch.testing.assert_close(ours, get_ema_avg_fn(0.9)(average, weights, torch.tensor(3)))


def test_decay_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="ema.decay"):
        WeightEMA(decay=1.0)


def test_a_task_run_keeps_the_average_only_when_asked(workdir):
    plain = main(task_args("homogenization", "--trainer.max_epochs=1"))
    assert not any(isinstance(cb, WeightEMA) for cb in plain.trainer.callbacks)
    cli = main(task_args("homogenization", "--trainer.max_epochs=2", "--ema.decay=0.5"))
    assert [cb.decay for cb in cli.trainer.callbacks if isinstance(cb, WeightEMA)] == [0.5]
    best = next(run_checkpoints(workdir, "homogenization")[-1].glob("best-*.ckpt"))
    saved = torch.load(best, weights_only=False)
    assert "current_model_state" in saved and "test/mae" in cli.trainer.callback_metrics
    runs = search_runs(workdir, "mve_homogenization").sort_values("start_time")
    assert runs["params.ema/decay"].tolist() == [None, "0.5"]
