"""A trained composition model in MLflow.

``CompositionPyfunc`` wraps ``lightning_modules.composition_model`` (the net and
the featuriser with its training-split scaling, from a checkpoint) as an MLflow
pyfunc model, and ``LogCompositionModel`` logs it into the run after
testing, so ``mlflow.pyfunc.load_model("runs:/<id>/model").predict(df)``
works with a ``formula`` column.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import mlflow.pyfunc
import pandas as pd

from callbacks.mlflow_run import mlflow_logger
from datamodules.composition import CompositionDataModule
from lightning_modules.composition_model import load_composition_model, predict_formulas


class CompositionPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: a DataFrame with a ``formula`` column in, predictions out."""

    def load_context(self, context):
        self.module, self.datamodule = load_composition_model(context.artifacts["checkpoint"])

    def __getstate__(self):
        # MLflow loads the model to check the input example before pickling this object; the weights travel
        # as the checkpoint artifact, so the pickle leaves the loaded copy out (else every logged model twice)
        return {k: v for k, v in self.__dict__.items() if k not in ("module", "datamodule")}

    def predict(self, context, model_input: pd.DataFrame, params=None):  # typed: MLflow infers no schema from it
        if isinstance(model_input, pd.DataFrame):
            if "formula" not in model_input.columns:
                raise ValueError(f"input needs a 'formula' column; it has {list(model_input.columns)}")
            formulas = model_input["formula"].tolist()
        else:
            formulas = list(model_input)
        table = predict_formulas(self.module, self.datamodule, formulas)
        if "std" in table:  # a model with uncertainty: prediction and standard deviation
            return table[["prediction", "std"]]
        return table["prediction"].to_numpy()


# What loading the model needs, pinned to what trained it (naming them skips MLflow's slow import probe).
REQUIREMENTS = ("deep-materials", "mlflow", "torch", "lightning", "numpy", "pandas", "pymatgen", "torch-geometric")


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


class LogCompositionModel(pl.Callback):
    """After testing (on the best weights), log the model as MLflow model ``model``."""

    def on_test_end(self, trainer, pl_module):
        logger = mlflow_logger(trainer)
        if logger is None or trainer.fast_dev_run or not isinstance(trainer.datamodule, CompositionDataModule):
            return
        ckpt = Path(trainer.default_root_dir) / "mlflow-model.ckpt"
        # weights, hyperparameters and the featuriser's state (no optimizer); collective under DDP: every rank calls it
        trainer.save_checkpoint(ckpt, weights_only=True)
        if trainer.global_rank != 0:
            return
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            mlflow.pyfunc.save_model(
                str(model_dir), python_model=CompositionPyfunc(), artifacts={"checkpoint": str(ckpt)},
                input_example=pd.DataFrame({"formula": ["NaCl", "Fe2O3"]}), pip_requirements=pip_requirements(),
            )
            logger.experiment.log_artifacts(logger.run_id, str(model_dir), "model")
        ckpt.unlink(missing_ok=True)
        score = trainer.callback_metrics.get("test/mae")
        register(logger.experiment, logger.run_id, None if score is None else float(score))


#: the alias of the registered version with the lowest test MAE (``models:/<name>@best``)
BEST_ALIAS = "best"


def register(client, run_id: str, test_mae: float | None) -> tuple[str, str]:
    """Register the run's ``model`` as a version of ``<task>-<dataset>`` (its tags and params) in the MLflow Model
    Registry, and move the alias ``best`` to it when its test MAE is lower than the current best's;
    returns (name, version)."""
    from mlflow.exceptions import MlflowException

    run = client.get_run(run_id)
    task = run.data.tags.get("task") or run.data.tags.get("net", "model").lower()
    dataset = Path(str(run.data.params.get("dataset", "data"))).stem  # a user's file: its name, not its path
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task}-{dataset}")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"{task} trained on {run.data.params.get('dataset')}: "
                                       f"every run's model; @{BEST_ALIAS} has the lowest test MAE")
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id,
                                          tags={"test/mae": "" if test_mae is None else f"{test_mae:.6g}"}).version
    if test_mae is not None:
        try:
            held = client.get_model_version_by_alias(name, BEST_ALIAS)
            best = float(held.tags.get("test/mae") or "inf")
        except MlflowException:
            best = float("inf")
        if test_mae < best:
            client.set_registered_model_alias(name, BEST_ALIAS, version)
    return name, str(version)
