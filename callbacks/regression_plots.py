"""Parity plot and cumulative error distribution of the test set (diss. Fig. 3.4); with a predictive
standard deviation, the calibration plot (observed against expected coverage of central intervals)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np

from callbacks.mlflow_run import mlflow_logger


def parity_and_cdf(pred: np.ndarray, true: np.ndarray, out_dir: Path, unit: str = "eV/atom") -> list[Path]:
    """Draw ``parity.png`` and ``error_cdf.png`` into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    err = np.abs(pred - true)
    mae = err.mean()
    lo, hi = float(min(pred.min(), true.min())), float(max(pred.max(), true.max()))
    fig, ax = plt.subplots(figsize=(5, 5))
    if len(true) > 5000:
        hb = ax.hexbin(true, pred, gridsize=120, bins="log", cmap="viridis", mincnt=1)
        fig.colorbar(hb, ax=ax, label="test points per bin")
    else:
        ax.scatter(true, pred, s=6, alpha=0.5)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xlabel=f"true ({unit})", ylabel=f"predicted ({unit})", title=f"test parity (n={len(true)}, MAE {mae:.4f})")
    fig.tight_layout()
    parity = out_dir / "parity.png"
    fig.savefig(parity, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    sorted_err = np.sort(err)
    ax.plot(sorted_err, np.arange(1, len(err) + 1) / len(err))
    for q in (0.5, 0.9):
        ax.axvline(np.quantile(err, q), ls=":", color="grey")
        ax.text(np.quantile(err, q), q, f" {int(q * 100)}%: {np.quantile(err, q):.3f}", va="bottom")
    ax.set(xlabel=f"absolute error ({unit})", ylabel="fraction of test set", title="cumulative error distribution",
           xscale="log" if sorted_err[0] > 0 else "linear")
    fig.tight_layout()
    cdf = out_dir / "error_cdf.png"
    fig.savefig(cdf, dpi=120)
    plt.close(fig)
    return [parity, cdf]


def calibration_plot(pred: np.ndarray, std: np.ndarray, true: np.ndarray, out_dir: Path,
                     raw_std: np.ndarray | None = None) -> Path:
    """``calibration.png``: observed coverage of the central intervals mean ± z·std against the expected (and of
    the net's own σ before recalibration, when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from lightning_modules.uncertainty import calibration_curve

    expected, observed = (a.numpy() for a in calibration_curve(*(torch.from_numpy(a) for a in (pred, std, true))))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    if raw_std is not None:
        before = calibration_curve(*(torch.from_numpy(a) for a in (pred, raw_std, true)))[1].numpy()
        ax.plot(expected, before, "s:", color="grey", label=f"before calibration (mean std {raw_std.mean():.3f})")
    ax.plot(expected, observed, "o-", label=f"test (mean std {std.mean():.3f})")
    ax.fill_between(expected, expected, observed, alpha=0.2)
    ax.set(xlabel="expected coverage of the central interval", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1),
           title="calibration (below the diagonal: overconfident)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = out_dir / "calibration.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class RegressionPlots(pl.Callback):
    """After testing, log the parity plot and error CDF (and calibration plot) as MLflow artifacts."""

    def on_test_end(self, trainer, pl_module):
        outputs = getattr(pl_module, "last_test_outputs", None)
        logger = mlflow_logger(trainer)
        if outputs is None or logger is None or trainer.global_rank != 0:
            return
        pred, true = (t.numpy() for t in outputs[:2])
        with tempfile.TemporaryDirectory() as tmp:
            unit = getattr(trainer.datamodule, "target_unit", "eV/atom")
            paths = parity_and_cdf(pred, true, Path(tmp), unit=unit)
            if len(outputs) > 2:  # a predictive standard deviation
                raw = outputs[3].numpy() if len(outputs) > 3 else None  # σ before calibration
                paths.append(calibration_plot(pred, outputs[2].numpy(), true, Path(tmp), raw))
            for path in paths:
                logger.experiment.log_artifact(logger.run_id, str(path), "plots")
