"""Where a run's wall time goes, and how its validation score falls against the minutes spent training.

Every run of the CLI has this callback (a LightningCLI forced callback, ``cli/train.py``). It logs to MLflow

- ``time/startup_s``: from the start of the process (or of the previous run in the same process) to the first
  training step: imports, data preparation and featurisation, the net, the sanity check;
- ``time/training_s``: the fit from its first step, validation included, summed over resumed pieces;
- ``time/testing_s``: the test loop; ``time/logging_s``: what the other callbacks do once testing ended
  (plots, the logged model);
- ``time/train_minutes`` at every validation, on the validation metric's step, and the plot
  ``plots/val_curve_minutes.png`` of the module's ``best_metric`` (``val/mae``, ``val/acc``...) against it.

The training seconds and the curve are checkpointed, so a resumed run continues both.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl

from callbacks.mlflow_run import mlflow_logger

_process_started: float | None = None  # the first timeline of a process measures start-up from the process's start


def _process_start() -> float:
    global _process_started
    if _process_started is None:
        import psutil

        _process_started = psutil.Process().create_time()
        return _process_started
    return time.time()


def curve_plot(curves: dict[str, list[tuple[float, float]]], metric: str, path: Path) -> Path:
    """``metric`` against training minutes, one line per label of ``curves`` ({label: [(minutes, value)]})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        if points:
            minutes, values = zip(*points)
            ax.plot(minutes, values, marker=".", label=label)
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel(metric)
    if metric.endswith(("mae", "rmse", "loss")) and all(v > 0 for pts in curves.values() for _, v in pts):
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class RunTimeline(pl.Callback):
    """Phase wall times and the validation curve against training minutes, logged to the run's MLflow run."""

    def __init__(self, epoch_lines: bool = False):
        """``epoch_lines``: print one line per epoch (set by the CLI when the output is a file, not a terminal,
        in place of a progress bar's carriage returns)."""
        self.epoch_lines = epoch_lines
        self.started = _process_start()
        self.train_seconds = 0.0  # finished pieces of a resumed fit
        self.curve: list[tuple[float, float]] = []
        self._fit_from: float | None = None
        self._test_from = self._test_done = None

    @property
    def state_key(self) -> str:
        return "RunTimeline"

    def state_dict(self) -> dict:
        return {"train_seconds": self._training_seconds(), "curve": list(self.curve)}

    def load_state_dict(self, state: dict) -> None:
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.curve = [tuple(p) for p in state.get("curve", [])]

    def _training_seconds(self) -> float:
        return self.train_seconds + (time.perf_counter() - self._fit_from if self._fit_from is not None else 0.0)

    def _log(self, trainer, values: dict[str, float]) -> None:
        logger = mlflow_logger(trainer)
        if logger is None or trainer.global_rank != 0:
            return
        for key, value in values.items():
            logger.experiment.log_metric(logger.run_id, key, value)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._fit_from is None:
            self._fit_from = time.perf_counter()
            self._log(trainer, {"time/startup_s": time.time() - self.started})

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking and self._fit_from is not None:  # logged by Lightning: the val metrics' step
            pl_module.log("time/train_minutes", self._training_seconds() / 60, sync_dist=True)

    def on_validation_end(self, trainer, pl_module):
        metric = getattr(pl_module, "best_metric", None)
        if trainer.sanity_checking or self._fit_from is None or metric not in trainer.callback_metrics:
            return
        self.curve.append((float(trainer.callback_metrics["time/train_minutes"]),
                           float(trainer.callback_metrics[metric])))

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.epoch_lines or trainer.global_rank != 0:
            return
        shown = {k: float(v) for k, v in trainer.callback_metrics.items()
                 if k.startswith(("train/loss", "val/")) and v.numel() == 1}
        values = "  ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items()))
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {values}  "
              f"({self._training_seconds() / 60:.1f} min training)", flush=True)

    def on_fit_end(self, trainer, pl_module):
        if self._fit_from is None:
            return
        self.train_seconds, self._fit_from = self._training_seconds(), None
        self._log(trainer, {"time/training_s": self.train_seconds})
        logger = mlflow_logger(trainer)
        metric = getattr(pl_module, "best_metric", None)
        if logger is None or trainer.global_rank != 0 or not self.curve or metric is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = curve_plot({"this run": self.curve}, metric, Path(tmp) / "val_curve_minutes.png")  # one line, no legend
            logger.experiment.log_artifact(logger.run_id, str(path), "plots")

    def on_test_start(self, trainer, pl_module):
        self._test_from = time.perf_counter()

    def on_test_epoch_end(self, trainer, pl_module):
        self._test_done = time.perf_counter()

    def on_test_end(self, trainer, pl_module):  # after the configured callbacks' own on_test_end
        if self._test_from is None or self._test_done is None:
            return
        self._log(trainer, {"time/testing_s": self._test_done - self._test_from,
                            "time/logging_s": time.perf_counter() - self._test_done})
        self._test_from = self._test_done = None
