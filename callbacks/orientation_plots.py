"""Cumulative distribution of test disorientations (the network's, and dictionary indexing's beside it)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np

from callbacks.mlflow_run import mlflow_logger


def disorientation_cdf(curves: dict[str, np.ndarray], path: Path, title: str = "test patterns") -> Path:
    """Draw the CDFs of disorientation angles (degrees), one curve per method, into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, angles in curves.items():
        angles = np.sort(np.asarray(angles, dtype=np.float64))
        ax.plot(np.maximum(angles, 1e-3), np.arange(1, len(angles) + 1) / len(angles),
                label=f"{name}: mean {angles.mean():.3f}°, median {np.median(angles):.3f}°")
    ax.set(xscale="log", xlabel="disorientation to the true orientation (°)", ylabel="fraction of patterns",
           title=f"disorientation CDF, {title}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class DisorientationPlots(pl.Callback):
    """After testing, log ``plots/disorientation_cdf.png``: the net's test disorientations and, when the
    :class:`~callbacks.ebsd_baselines.DictionaryIndexingBaseline` callback ran before this one, dictionary
    indexing's on the same patterns."""

    def on_test_end(self, trainer, pl_module):
        outputs = getattr(pl_module, "last_test_outputs", None)
        logger = mlflow_logger(trainer)
        if not outputs or logger is None or trainer.global_rank != 0:
            return
        curves = {type(getattr(pl_module, "net", pl_module)).__name__: outputs["disorientation"].numpy()}
        curves.update(getattr(pl_module, "baseline_disorientations", {}))
        with tempfile.TemporaryDirectory() as tmp:
            path = disorientation_cdf(curves, Path(tmp) / "disorientation_cdf.png",
                                      f"{len(outputs['disorientation'])} noisy test patterns")
            logger.experiment.log_artifact(logger.run_id, str(path), "plots")
