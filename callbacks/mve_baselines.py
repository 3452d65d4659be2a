"""The microstructure tasks' baselines, fitted and scored in the same MLflow run as the CNN.

After testing, on the datamodule's own train/test elements:

- homogenization (Yang et al. 2018): rule of mixtures, Voigt and Reuss (no fitting), and
  2-point statistics + PCA + polynomial regression (``materials.two_point``);
- localization (Yang et al. 2019): first-order materials knowledge systems (``materials.mks``).

Each baseline logs ``test/baseline/<name>/mae`` and ``.../mae_pct`` (the CNN's ``test/mae_pct``
is the same measure) and the run gets ``baselines.md``: the CNN beside its baselines and the
published numbers.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np

from callbacks.mlflow_run import mlflow_logger
from materials.bounds import reuss_c11, voigt_c11

PUBLISHED = {  # review 002 (Yang et al. 2018, 2019): MAE or MASE in %
    "homogenization": {"cnn": 3.10, "two_point_pca": 6.79, "voigt": 46.66},
    "localization": {10.0: {"cnn": 3.07, "mks": 10.86}, 50.0: {"cnn": 5.71, "mks": 26.46}},
}


def _scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    err = np.abs(pred - true)
    return {"mae": float(err.mean()), "mae_pct": float(100 * err.mean() / np.abs(true).mean())}


class _Baselines(pl.Callback):
    task = ""

    def fit_and_score(self, train: dict, test: dict, dm) -> dict[str, dict[str, float]]:
        raise NotImplementedError

    def published(self, dm) -> dict[str, float]:
        return PUBLISHED[self.task]

    def on_test_end(self, trainer, pl_module):
        dm, logger = trainer.datamodule, mlflow_logger(trainer)
        if trainer.global_rank != 0 or trainer.fast_dev_run or not getattr(dm, "arrays", None):
            return
        start = time.perf_counter()
        scores = self.fit_and_score(dm.arrays["train"], dm.arrays["test"], dm)
        seconds = time.perf_counter() - start
        model = trainer.callback_metrics.get("test/mae_pct")
        rows = [("CNN (this run)", float(model) if model is not None else float("nan"), self.published(dm).get("cnn"))]
        rows += [(name, s["mae_pct"], self.published(dm).get(name)) for name, s in scores.items()]
        table = "\n".join([f"| model | test MAE % of mean ({len(dm.arrays['test']['micro'])} test elements) | published % |",
                           "|---|---|---|"]
                          + [f"| {n} | {v:.2f} | {'' if p is None else f'{p:.2f}'} |" for n, v, p in rows])
        table += f"\n\nbaselines fitted on {len(dm.arrays['train']['micro'])} training elements in {seconds:.1f} s\n"
        pl_module.baseline_table = table
        if logger is None:
            return
        metrics = {f"test/baseline/{name}/{k}": v for name, s in scores.items() for k, v in s.items()}
        logger.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "baselines.md")
            path.write_text(table)
            logger.experiment.log_artifact(logger.run_id, str(path))


class HomogenizationBaselines(_Baselines):
    """Rule of mixtures and 2-point statistics + PCA + polynomial regression on C11."""

    task = "homogenization"

    def __init__(self, n_components: int = 5, degree: int = 2, cutoff: int | None = 12):
        super().__init__()
        self.n_components, self.degree, self.cutoff = n_components, degree, cutoff

    def fit_and_score(self, train, test, dm):
        from materials.two_point import TwoPointPCARegression

        material = dm.spec.material()
        true = test["c11"]
        scores = {"voigt": _scores(voigt_c11(test["volume_fraction"], material), true),
                  "reuss": _scores(reuss_c11(test["volume_fraction"], material), true)}
        cutoff = None if self.cutoff is None or 2 * self.cutoff + 1 >= dm.spec.size else self.cutoff
        model = TwoPointPCARegression(n_components=min(self.n_components, len(train["c11"]) - 1), degree=self.degree,
                                      cutoff=cutoff)
        model.fit(train["micro"], train["c11"])
        scores["two_point_pca"] = _scores(model.predict(test["micro"]), true)
        return scores


class LocalizationBaselines(_Baselines):
    """First-order MKS influence-kernel regression of the local strain."""

    task = "localization"

    def published(self, dm):
        return PUBLISHED["localization"].get(float(dm.spec.contrast), {})

    def fit_and_score(self, train, test, dm):
        from materials.mks import MKSLocalization

        model = MKSLocalization()
        model.fit(train["micro"], train["strain11"])
        return {"mks": _scores(model.predict(test["micro"]), test["strain11"])}
