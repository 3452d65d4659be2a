"""The 1D baseline of diss. 7.4.4, fitted and scored in the same MLflow run (and fold) as PADNet.

Bunn et al.'s approach as the paper ran it: integrate each raw frame to an intensity–2θ pattern
(pyFAI ``integrate1d``; NIST's two frames combined onto one 10–60° grid), subtract a 1D background
(SNIP here, where the paper used MATLAB's envelope), scale each pattern to its maximum, and
classify with AdaBoost over decision trees, grid-searched as the paper (depth 2–10, learning
rate 1 / 0.1 / 0.001, 5 or 10 estimators; 54 settings) by stratified 3-fold CV on the training
samples. Three variants: patterns alone, patterns + composition (the paper's two), and
composition alone (how much of the label the composition already gives). Training and
validation samples are its training set; the test fold is PADNet's.

Logs ``test/baseline/<variant>/acc`` and ``/f1``, the chosen settings as params and
``baselines.md`` (PADNet beside its baselines and the published numbers).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np

from callbacks.mlflow_run import mlflow_logger
from materials.xrd_background import snip_background
from materials.xrd_geometry import powder_patterns

PUBLISHED = {  # diss. 7.4.3-7.4.4: 10-fold accuracy %, mean ± std
    "SLAC": {"padnet": "~84", "adaboost": "34.8 ± 14.0", "adaboost_composition": "70.8 ± 15.8"},
    "NIST": {"padnet": "~84", "adaboost": "83.8 ± 14.5", "adaboost_composition": "84.0 ± 22.3"},
}
PAPER_GRID = {"estimator__max_depth": list(range(2, 11)), "learning_rate": [1.0, 0.1, 0.001], "n_estimators": [5, 10]}


def pattern_features(frames: np.ndarray, instrument, clip_width: float = 1.5) -> np.ndarray:
    """Background-subtracted 1D patterns scaled to their maximum: (n, n_points_1d)."""
    tth, patterns = powder_patterns(frames, instrument)
    step = float(tth[1] - tth[0])
    net = np.maximum(patterns - snip_background(patterns, max(2, round(clip_width / step))), 0)
    return net / np.maximum(net.max(1, keepdims=True), 1e-12)


def fit_adaboost(x_train: np.ndarray, y_train: np.ndarray, grid: dict, seed: int = 0, n_jobs: int = 1):
    """AdaBoost over decision trees, its settings chosen by stratified inner CV on the training samples."""
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.tree import DecisionTreeClassifier

    model = AdaBoostClassifier(DecisionTreeClassifier(random_state=seed), random_state=seed)
    inner = min(3, int(np.bincount(y_train)[np.unique(y_train)].min()))
    if inner < 2:  # a class with one training sample: no inner CV is possible, take the grid's first setting
        first = {k: v[0] for k, v in grid.items()}
        return model.set_params(**first).fit(x_train, y_train), first
    search = GridSearchCV(model, grid, cv=StratifiedKFold(inner, shuffle=True, random_state=seed), n_jobs=n_jobs)
    search.fit(x_train, y_train)
    return search.best_estimator_, search.best_params_


def baseline_scores(train: dict, test: dict, instrument, grid: dict = PAPER_GRID, seed: int = 0,
                    n_jobs: int = 1) -> dict[str, dict]:
    """Accuracy, macro F1 and chosen settings of the three variants; ``train``/``test`` hold raw
    ``frames``, ``composition`` and ``label``."""
    from sklearn.metrics import accuracy_score, f1_score

    p_train, p_test = (pattern_features(d["frames"], instrument) for d in (train, test))
    variants = {"adaboost": (p_train, p_test),
                "adaboost_composition": (np.hstack([p_train, train["composition"]]),
                                         np.hstack([p_test, test["composition"]])),
                "composition_only": (train["composition"], test["composition"])}
    out = {}
    for name, (x_train, x_test) in variants.items():
        start = time.perf_counter()
        model, params = fit_adaboost(x_train, train["label"], grid, seed, n_jobs)
        pred = model.predict(x_test)
        out[name] = {"acc": float(accuracy_score(test["label"], pred)),
                     "f1": float(f1_score(test["label"], pred, average="macro", zero_division=0)),
                     "params": params, "seconds": time.perf_counter() - start}
    return out


class XRDBaselines(pl.Callback):
    """After testing: the 1D AdaBoost baselines on the datamodule's own train+val / test samples.

    Args:
        grid: AdaBoost settings searched (default: the paper's 54).
        n_jobs: processes of the grid search.
    """

    def __init__(self, grid: dict | None = None, n_jobs: int = 1):
        super().__init__()
        self.grid, self.n_jobs = grid or PAPER_GRID, n_jobs

    def on_test_end(self, trainer, pl_module):
        dm, logger = trainer.datamodule, mlflow_logger(trainer)
        if trainer.global_rank != 0 or trainer.fast_dev_run or not getattr(dm, "arrays", None):
            return
        fit_rows = np.sort(np.concatenate([dm.parts["train"], dm.parts["val"]]))
        train = {"frames": dm.raw_frames(fit_rows), "composition": dm.composition(fit_rows), "label": dm.labels(fit_rows)}
        test_rows = dm.parts["test"]
        test = {"frames": dm.raw_frames(test_rows), "composition": dm.composition(test_rows), "label": dm.labels(test_rows)}
        scores = baseline_scores(train, test, dm.instrument, self.grid, dm.hparams.get("seed", 0), self.n_jobs)
        published = PUBLISHED.get(dm.instrument.name, {})
        model_acc = trainer.callback_metrics.get("test/acc")
        rows = [("PADNet (this run)", float(model_acc) if model_acc is not None else float("nan"), "",
                 published.get("padnet", ""))]
        rows += [(name, s["acc"], str(s["params"]), published.get(name, "")) for name, s in scores.items()]
        table = "\n".join([f"| model | test accuracy ({len(test['label'])} test samples, {dm.instrument.name}) | "
                           "chosen settings | published 10-fold % |", "|---|---|---|---|"]
                          + [f"| {n} | {v:.4f} | {p} | {pub} |" for n, v, p, pub in rows])
        table += (f"\n\nbaselines: raw frames integrated with pyFAI, SNIP background, AdaBoost grid of "
                  f"{int(np.prod([len(v) for v in self.grid.values()]))} settings by stratified inner CV on "
                  f"{len(train['label'])} training samples, {sum(s['seconds'] for s in scores.values()):.1f} s\n")
        pl_module.baseline_table = table
        for name, s in scores.items():
            for k in ("acc", "f1"):
                trainer.callback_metrics[f"test/baseline/{name}/{k}"] = s[k]
        if logger is None:
            return
        logger.log_metrics({f"test/baseline/{name}/{k}": s[k] for name, s in scores.items() for k in ("acc", "f1")})
        for name, s in scores.items():
            for key, value in s["params"].items():
                logger.experiment.log_param(logger.run_id, f"baseline/{name}/{key}", value)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "baselines.md")
            path.write_text(table)
            logger.experiment.log_artifact(logger.run_id, str(path))
