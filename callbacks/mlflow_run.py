"""Put what describes a run into its MLflow run: config, data report, sizes.

``MLflowSaveConfig`` replaces LightningCLI's SaveConfigCallback, which needs a
log directory that a database-backed MLflow logger does not have: the resolved
config is uploaded as the artifact ``config.yaml`` instead.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger


def mlflow_logger(trainer: pl.Trainer) -> MLFlowLogger | None:
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            return logger
    return None


def log_text_artifact(trainer: pl.Trainer, text: str, name: str) -> None:
    """Write ``text`` as artifact ``name`` of the run (rank 0 only)."""
    logger = mlflow_logger(trainer)
    if logger is None or trainer.global_rank != 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        logger.experiment.log_artifact(logger.run_id, str(path))


class MLflowSaveConfig(SaveConfigCallback):
    """Upload the resolved config as ``config.yaml`` in the MLflow run."""

    def __init__(self, *args, **kwargs):
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)

    def save_config(self, trainer, pl_module, stage) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        log_text_artifact(trainer, text, "config.yaml")


class MLflowRunInfo(pl.Callback):
    """Log the data cleaning report, the parameter count and helpful tags.

    The run id also goes into every checkpoint (``mlflow_run_id``), so a run
    resumed with ``--ckpt_path`` continues the same MLflow run.
    """

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        logger = mlflow_logger(trainer)
        if logger is not None:
            checkpoint["mlflow_run_id"] = logger.run_id

    def on_fit_start(self, trainer, pl_module):
        logger = mlflow_logger(trainer)
        if logger is None or trainer.global_rank != 0:
            return
        client, run_id = logger.experiment, logger.run_id
        run = client.get_run(run_id)
        if run.info.status != "RUNNING":  # a resumed run
            client.update_run(run_id, status="RUNNING")
        client.set_experiment_tag(logger.experiment_id, "mlflow.experimentKind", "custom_model_development")
        n_params = sum(p.numel() for p in pl_module.parameters())
        client.log_param(run_id, "n_parameters", n_params)
        precision = str(trainer.precision)  # cli/precision.py chooses it when the config does not
        if "precision" not in run.data.params:
            client.log_param(run_id, "precision", precision)
        elif run.data.params["precision"] != precision:  # resumed in another precision: params are write-once
            client.set_tag(run_id, "precision.resumed_in", precision)
        client.set_tag(run_id, "net", type(getattr(pl_module, "net", pl_module)).__name__)
        if getattr(pl_module, "transferred_from", None):  # transfer learning: where the initial weights came from
            client.set_tag(run_id, "transfer.source", pl_module.transferred_from)
        report = getattr(trainer.datamodule, "cleaning_report", None)
        if report:
            log_text_artifact(trainer, json.dumps(report, indent=2, default=str), "cleaning_report.json")
            for key in ("rows_read", "dropped_bad_rows", "dropped_single_element",
                        "dropped_duplicate_composition", "dropped_outlier", "train_subsampled_to"):
                if key in report:
                    client.log_param(run_id, f"data/{key}", report[key])
            for split, size in report.get("sizes", {}).items():
                client.log_param(run_id, f"data/n_{split}", size)
