"""``make baseline TASK=…``: a scikit-learn Random Forest on the task's split and inputs.

It reads the same configs as ``make train`` (so the same dataset, cleaning,
split and features), fits on the training split, and logs one MLflow run in
the task's experiment with the same metric names (``test/mae`` ...), so the
MLflow UI puts it beside the nets. Options: ``--rf.n_estimators``,
``--rf.max_features``, ``--rf.min_samples_leaf``, ``--rf.n_jobs``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from callbacks.regression_plots import parity_and_cdf
from cli.train import TaskCLI


class BaselineCLI(TaskCLI):
    learner = "random-forest"

    def add_arguments_to_parser(self, parser):
        super().add_arguments_to_parser(parser)
        parser.add_argument("--rf.n_estimators", type=int, default=100)
        parser.add_argument("--rf.max_features", type=float, default=0.33)
        parser.add_argument("--rf.min_samples_leaf", type=int, default=1)
        parser.add_argument("--rf.n_jobs", type=int, default=-1)


def regression_metrics(pred: np.ndarray, true: np.ndarray, stage: str) -> dict[str, float]:
    err = pred - true
    ss_tot = ((true - true.mean()) ** 2).sum()
    return {f"{stage}/mae": float(np.abs(err).mean()), f"{stage}/rmse": float(np.sqrt((err ** 2).mean())),
            f"{stage}/r2": float(1 - (err ** 2).sum() / ss_tot), f"{stage}/ae_p50": float(np.quantile(np.abs(err), 0.5)),
            f"{stage}/ae_p90": float(np.quantile(np.abs(err), 0.9))}


def build_baseline(args: list[str] | None = None) -> BaselineCLI:
    """The task's configs parsed and instantiated, with the ``--rf.*`` options."""
    return BaselineCLI(model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True,
                       save_config_callback=None, run=False, args=args, parser_kwargs={"default_env": False})


def main(args: list[str] | None = None) -> dict[str, float]:
    from sklearn.ensemble import RandomForestRegressor

    cli = build_baseline(args)
    dm = cli.datamodule
    dm.prepare_data()
    dm.setup("fit")
    arrays = {s: (t.tensors[0].numpy(), t.tensors[1].numpy().ravel()) for s, t in dm.splits.items()}
    rf_args = cli.config.rf
    rf = RandomForestRegressor(n_estimators=rf_args.n_estimators, max_features=rf_args.max_features,
                               min_samples_leaf=rf_args.min_samples_leaf, n_jobs=rf_args.n_jobs,
                               random_state=cli.config.seed_everything or 0)
    start = time.perf_counter()
    rf.fit(*arrays["train"])
    fit_s = time.perf_counter() - start
    metrics = {"fit_seconds": fit_s}
    rf.n_jobs = 1  # prediction on one CPU core, timed on the test split as Table 3.2 of the dissertation reports it
    preds = {}
    for stage in ("val", "test"):
        x, y = arrays[stage]
        start = time.perf_counter()
        preds[stage] = rf.predict(x)
        metrics[f"{stage}/predict_seconds_cpu1"] = time.perf_counter() - start
        metrics.update(regression_metrics(preds[stage], y, stage))
    metrics["test/n_predicted"] = float(len(preds["test"]))

    logger = cli.trainer.logger
    client = logger.experiment
    run_id = logger.run_id
    if "random-forest" not in (logger._run_name or ""):  # a run named by its caller (make cv): say what it is
        client.set_tag(run_id, "mlflow.runName", f"{logger._run_name or 'run'}-random-forest")
    client.set_tag(run_id, "net", "RandomForestRegressor")
    client.set_experiment_tag(logger.experiment_id, "mlflow.experimentKind", "custom_model_development")
    params = {f"rf/{k}": v for k, v in vars(rf_args).items()}
    params.update({k: v for k, v in dm.hparams.items()})
    logger.log_hyperparams(params)
    logger.log_metrics(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "cleaning_report.json").write_text(json.dumps(dm.cleaning_report, indent=2, default=str))
        client.log_artifact(run_id, str(Path(tmp, "cleaning_report.json")))
        for path in parity_and_cdf(preds["test"], arrays["test"][1], Path(tmp)):
            client.log_artifact(run_id, str(path), "plots")
    logger.finalize("success")
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
