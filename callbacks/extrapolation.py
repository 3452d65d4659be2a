"""Whether the extrapolation flag points at the larger errors: flagged against unflagged test and validation rows.

After testing a composition model, the flag of ``make predict`` (:class:`materials.extrapolation.ExtrapolationFlag`:
an unseen chemical system, or farther from the nearest training composition than 95 % of the validation rows)
is raised for the test and validation rows (at most ``max_rows`` of each, seeded), and the run logs, per split
and for both together, the share flagged and the MAE of flagged and of unflagged rows
(``extrapolation/<split>/mae_flagged`` …) with a table ``extrapolation.md``. On a chemical-system hold-out
(``split: holdout_system``) every test row is in an unseen system, and the validation rows are the unflagged
comparison.
"""

from __future__ import annotations

import numpy as np
import lightning.pytorch as pl

from callbacks.calibration import validation_predictions
from callbacks.mlflow_run import mlflow_logger
from materials.extrapolation import ExtrapolationFlag


def flagged_errors(flag: np.ndarray, error: np.ndarray) -> dict[str, float]:
    """Share flagged and the MAE of flagged and unflagged rows (NaN where a group is empty)."""
    def mae(rows: np.ndarray) -> float:
        return float(error[rows].mean()) if rows.any() else float("nan")

    return {"rows": float(len(flag)), "flagged_share": float(flag.mean()) if len(flag) else float("nan"),
            "mae_flagged": mae(flag), "mae_unflagged": mae(~flag)}


class ExtrapolationErrors(pl.Callback):
    """After testing: MAE of flagged against unflagged rows, for the test and validation splits."""

    def __init__(self, max_rows: int = 10_000, seed: int = 0):
        self.max_rows, self.seed = max_rows, seed

    def on_test_end(self, trainer, pl_module):
        data, outputs = trainer.datamodule, getattr(pl_module, "last_test_outputs", None)
        logger = mlflow_logger(trainer)
        if (outputs is None or logger is None or trainer.world_size > 1 or data is None  # DDP: a shard's rows
                or "val" not in getattr(data, "compositions", {}) or len(data.compositions["val"][0]) < 10):
            return
        train, val = data.compositions["train"][0], data.compositions["val"][0]
        flag = ExtrapolationFlag.fit(train, val, seed=self.seed)
        val_mean, _, val_true = validation_predictions(data, pl_module)
        errors = {"test": (outputs[0] - outputs[1]).abs().numpy(), "val": (val_mean - val_true).abs().numpy()}
        rng = np.random.default_rng(self.seed)
        flags, kept = {}, {}
        for split, error in errors.items():
            rows = np.sort(rng.permutation(len(error))[:self.max_rows])
            flags[split] = flag.assess(data.compositions[split][0][rows])["extrapolation"]
            kept[split] = error[rows]
        results = {split: flagged_errors(flags[split], kept[split]) for split in errors}
        results["all"] = flagged_errors(np.concatenate(list(flags.values())), np.concatenate(list(kept.values())))
        metrics = {f"extrapolation/{split}/{k}": v for split, r in results.items() for k, v in r.items()
                   if np.isfinite(v)}
        lines = [f"# Extrapolation flag (distance threshold {flag.threshold:.4f}: the 95th percentile of validation "
                 "rows' nearest-training distance; or an unseen chemical system)\n",
                 "| rows | n | flagged | MAE flagged | MAE unflagged |", "|---|---|---|---|---|"]
        lines += [f"| {split} | {int(r['rows']):,} | {r['flagged_share']:.1%} | {r['mae_flagged']:.4f} | "
                  f"{r['mae_unflagged']:.4f} |" for split, r in results.items()]
        for key, value in metrics.items():
            logger.experiment.log_metric(logger.run_id, key, value, step=0)
        logger.experiment.log_text(logger.run_id, "\n".join(lines) + "\n", "extrapolation.md")
