"""Put what describes a run into its MLflow run: config, data report, sizes.

``MLflowSaveConfig`` replaces LightningCLI's SaveConfigCallback, which needs a
log directory that a database-backed MLflow logger does not have: the resolved
config is uploaded as the artifact ``config.yaml`` instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from callbacks.weight_ema import WeightEMA


#: options that matter only under some values of another option: {option: (that option, its values)};
#: a run logs an option only where it applies, so the compare view shows what differs
ONLY_WHEN: dict[str, tuple[str, set]] = {
    "fold": ("split", {"kfold"}), "n_folds": ("split", {"kfold"}),
    "holdout_system": ("split", {"holdout_system"}), "holdout_rule": ("split", {"holdout_system"}),
    "test_fraction": ("split", {"random"}), "val_fraction": ("split", {"random", "kfold", "holdout_system"}),
    "mc_samples": ("uncertainty", {"mc_dropout"}), "ensemble_size": ("uncertainty", {"ensemble"}),
}


def applicable(params: dict) -> dict:
    """``params`` less the unset (None) options, Lightning's ``_instantiator`` and options ``ONLY_WHEN`` rules out."""
    kept = {k: v for k, v in params.items() if v is not None and k != "_instantiator"}
    return {k: v for k, v in kept.items()
            if k not in ONLY_WHEN or kept.get(ONLY_WHEN[k][0], next(iter(ONLY_WHEN[k][1]))) in ONLY_WHEN[k][1]}


def once_per_run(metric: str) -> bool:
    """A metric with one value per run: the test scores and the phase timings (``time/…_s``)."""
    return metric.startswith("test/") or (metric.startswith("time/") and metric.endswith("_s"))


def local_artifact_root(tracking_uri: str | None) -> Path | None:
    """The folder of a local SQLite store (``mlruns/`` for ``sqlite:///mlruns/mlflow.db``), where its runs'
    artifacts belong; None for a tracking server or another store (which decides that itself)."""
    uri = tracking_uri or ""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]).resolve().parent


def artifact_location(tracking_uri: str | None, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside a local store (``mlruns/artifacts/<experiment>``) whatever
    the working directory. MLflow would root them at the creating process's ``./mlruns``: a run started from
    another folder (a git worktree, a scratch directory) would leave its models there, lost with that folder."""
    root = local_artifact_root(tracking_uri)
    return None if root is None else str(root / "artifacts" / re.sub(r"[^A-Za-z0-9._-]+", "_", experiment))


def experiment_id(client, name: str) -> str:
    """The id of the experiment ``name`` in ``client``'s store, created (:func:`artifact_location`) if new."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri, name))


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger that logs only the options that apply to the run (``applicable``), and the
    metrics a run has once (``once_per_run``) at step 0: MLflow's charts then show them as values (bars) to
    compare across runs, not as one-point lines at the last training step. A new experiment keeps its artifacts
    beside a local store (:func:`artifact_location`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._artifact_location is None:
            self._artifact_location = artifact_location(self._tracking_uri, self._experiment_name)

    def log_hyperparams(self, params) -> None:
        params = params if isinstance(params, dict) else vars(params)
        super().log_hyperparams(applicable(dict(params)))

    def log_metrics(self, metrics, step=None) -> None:
        once = {k: v for k, v in metrics.items() if once_per_run(k)}
        if once:
            super().log_metrics(once, step=0)
        if len(once) < len(metrics):
            super().log_metrics({k: v for k, v in metrics.items() if k not in once}, step=step)


def git_commit() -> str | None:
    """The repository's commit (``+dirty`` when files differ from it), or None outside a git checkout."""
    repo = Path(__file__).resolve().parents[1]  # the code that ran, wherever the run's working directory is
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha


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
        client.set_experiment_tag(logger.experiment_id, SHARED_VIEW_TAG, json.dumps(compare_view(trainer)))
        n_params = sum(p.numel() for p in pl_module.parameters())
        client.log_param(run_id, "n_parameters", n_params)
        precision = str(trainer.precision)  # cli/precision.py chooses it when the config does not
        if "precision" not in run.data.params:
            client.log_param(run_id, "precision", precision)
        elif run.data.params["precision"] != precision:  # resumed in another precision: params are write-once
            client.set_tag(run_id, "precision.resumed_in", precision)
        client.set_tag(run_id, "net", type(getattr(pl_module, "net", pl_module)).__name__)
        client.set_tag(run_id, "device", _device(trainer))
        commit = git_commit()
        if commit and "git.commit" not in run.data.tags:
            client.set_tag(run_id, "git.commit", commit)
        for key, value in _budget(trainer).items():  # the training budget, so the compare view tells runs apart
            if key not in run.data.params:
                client.log_param(run_id, key, value)
        ema = next((cb.decay for cb in trainer.callbacks if isinstance(cb, WeightEMA)), None)
        if ema and "ema/decay" not in run.data.params:  # validated and tested: the moving average of the weights
            client.log_param(run_id, "ema/decay", ema)
        if getattr(pl_module, "transferred_from", None):  # transfer learning: where the initial weights came from
            client.set_tag(run_id, "transfer.source", pl_module.transferred_from)
        report = getattr(trainer.datamodule, "cleaning_report", None)
        if report:
            log_text_artifact(trainer, json.dumps(report, indent=2, default=str), "cleaning_report.json")
            for key in ("rows_read", "dropped_bad_rows", "dropped_single_element",
                        "dropped_duplicate_composition", "dropped_outlier", "train_subsampled_to"):
                if key in report:
                    client.log_param(run_id, f"data/{key}", report[key])
            if report.get("file_sha256"):  # the data's files, whatever their names: one digest
                files = "\n".join(f"{k}:{v}" for k, v in sorted(report["file_sha256"].items()))
                client.set_tag(run_id, "dataset.sha256", hashlib.sha256(files.encode()).hexdigest()[:16])
            for split, size in report.get("sizes", {}).items():
                client.log_param(run_id, f"data/n_{split}", size)


#: the MLflow UI's shared view of an experiment's runs table (``?viewStateShareKey=compare``): the columns that
#: tell runs apart, best run first
SHARED_VIEW_KEY = "compare"
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW_KEY}"


def compare_view(trainer: pl.Trainer) -> dict:
    """The runs table's columns: the test and best-validation values of the metric the run checkpoints on, its
    training minutes, budget and precision, and the tags task, profile and seed; sorted by the test metric."""
    monitor = getattr(trainer.checkpoint_callback, "monitor", None) or "val/loss"
    test = "test/" + monitor.split("/", 1)[-1]
    mode = getattr(trainer.checkpoint_callback, "mode", "min")
    columns = ([f"metrics.`{m}`" for m in (test, f"{monitor}_best", "time/train_minutes")]
               + [f"params.`{p}`" for p in ("trainer/max_epochs", "precision")]
               + [f"tags.`{t}`" for t in ("task", "profile", "seed")])
    return {"selectedColumns": columns, "orderByKey": f"metrics.`{test}`", "orderByAsc": mode == "min"}


def shared_view_url(ui: str, experiment_id: str) -> str:
    """The address of an experiment's runs table with the columns of :func:`compare_view`."""
    return f"{ui}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={SHARED_VIEW_KEY}"


def _budget(trainer: pl.Trainer) -> dict:
    """The trainer's budget: epochs, steps and batch limits (those set)."""
    budget = {"trainer/max_epochs": trainer.max_epochs, "trainer/max_steps": trainer.max_steps,
              "trainer/limit_train_batches": trainer.limit_train_batches,
              "trainer/limit_val_batches": trainer.limit_val_batches,
              "trainer/accumulate_grad_batches": trainer.accumulate_grad_batches}
    return {k: v for k, v in budget.items() if v not in (None, -1, 1.0) or k == "trainer/max_epochs"}


def _device(trainer: pl.Trainer) -> str:
    """``cpu (2 threads)`` or ``cuda: <GPU name> x<devices>``."""
    import torch

    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)} x{trainer.world_size}"
    return f"{device.type} ({torch.get_num_threads()} threads) x{trainer.world_size}"
