"""``make train TASK=<name>``: fit, test on the best checkpoint, log it all to MLflow.

One config system: LightningCLI reads ``configs/defaults.yaml`` and
``configs/tasks/<TASK>.yaml`` (and any ``--config`` after them); every option
can be overridden on the command line (``--trainer.max_epochs=3``). A run that
raises is marked FAILED in MLflow (KILLED when interrupted), never left RUNNING.
Resume a killed run with ``--ckpt_path last``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")

from lightning.pytorch.cli import LightningCLI  # noqa: E402
from lightning.pytorch.loggers import MLFlowLogger  # noqa: E402

from callbacks.mlflow_run import MLflowSaveConfig  # noqa: E402
from callbacks.timeline import RunTimeline  # noqa: E402
from cli.precision import hardware_precision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "configs" / "tasks"


def known_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS.glob("*.yaml"))


class TaskCLI(LightningCLI):
    """LightningCLI with the data-decided sizes linked into the net."""

    def add_arguments_to_parser(self, parser):
        parser.link_arguments("data.n_features", "model.init_args.net.init_args.n_features", apply_on="instantiate")
        parser.add_lightning_class_args(RunTimeline, "timeline")  # every run: phase times, validation vs minutes
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume fitting from this checkpoint ('last' = the task's last.ckpt)")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="test the best checkpoint after fitting")

    def before_instantiate_classes(self):
        """One MLflow experiment per dataset (unless the config names one), so every
        model and baseline on the same data sits in one table; checkpoints under
        ``outputs/<run name>/checkpoints`` (so ``--ckpt_path last`` finds them);
        the folder of a SQLite MLflow store created."""
        trainer = self.config.trainer
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        logger_args = [lg.init_args for lg in loggers if getattr(lg, "init_args", None) is not None]
        dataset = Path(str(self.config.data.init_args.get("dataset", "run"))).stem
        for args in logger_args:
            if args.get("experiment_name") in (None, "", "lightning_logs"):
                args.experiment_name = dataset
        task = next((a.get("run_name") or a.experiment_name for a in logger_args), dataset)
        for args in logger_args:
            uri = args.get("tracking_uri") or ""
            if uri.startswith("sqlite:///"):
                Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        if not trainer.default_root_dir:
            trainer.default_root_dir = str(Path("outputs") / task)
        checkpoint_dir = Path(trainer.default_root_dir) / "checkpoints"
        for cb in trainer.callbacks or []:
            if cb.class_path.endswith("ModelCheckpoint"):
                if not cb.init_args.get("dirpath"):
                    cb.init_args.dirpath = str(checkpoint_dir)
                checkpoint_dir = Path(cb.init_args.dirpath)
        if trainer.get("precision") is None:  # the config leaves it to the hardware (cli/precision.py)
            trainer.precision = hardware_precision(str(trainer.get("accelerator") or "auto"))
        if trainer.get("sync_batchnorm") and not _gpu_run(trainer):
            import warnings

            warnings.warn("sync_batchnorm is GPU-only in torch DDP: on CPU each process keeps its own BatchNorm "
                          "statistics (turned off)", stacklevel=1)
            trainer.sync_batchnorm = False
        run_id = self._resumed_run_id(checkpoint_dir)
        for args in logger_args:
            if run_id and not args.get("run_id"):
                args.run_id = run_id

    def _resumed_run_id(self, checkpoint_dir: Path) -> str | None:
        """The MLflow run recorded in the checkpoint being resumed, if any."""
        ckpt = self.config.get("ckpt_path")
        if not ckpt:
            return None
        return checkpoint_run_id(checkpoint_dir / "last.ckpt" if ckpt == "last" else Path(ckpt))


def checkpoint_run_id(path: Path) -> str | None:
    """The MLflow run that wrote checkpoint ``path`` (callbacks.MLflowRunInfo records it), if it exists."""
    if not path.exists():
        return None
    import torch

    return torch.load(path, map_location="cpu", weights_only=True).get("mlflow_run_id")


def _gpu_run(trainer) -> bool:
    accelerator = str(trainer.get("accelerator") or "auto")
    if accelerator == "auto":
        import torch

        return torch.cuda.is_available()
    return accelerator in ("gpu", "cuda")


def _mark(cli: TaskCLI, status: str) -> None:
    """Record how the run ended; if the tracking server is unreachable, say so (the run stays RUNNING there)."""
    import sys

    for logger in cli.trainer.loggers:
        if isinstance(logger, MLFlowLogger) and logger._initialized:
            try:
                logger.experiment.set_terminated(logger.run_id, status)
            except Exception as err:  # noqa: BLE001 - the original error is what the user must see
                print(f"could not mark MLflow run {logger.run_id} {status} at {logger._tracking_uri}: "
                      f"{type(err).__name__}. The checkpoints are kept: when the tracking server is back, "
                      f"`--ckpt_path last` continues the same run.", file=sys.stderr)


def configured_tracking_uri(config) -> str | None:
    """The MLflow store the run's config names (the first logger with a ``tracking_uri``)."""
    loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
    return next((lg.init_args.get("tracking_uri") for lg in loggers
                 if getattr(lg, "init_args", None) is not None and lg.init_args.get("tracking_uri")), None)


def build(args: list[str] | None = None) -> TaskCLI:
    """Parse and instantiate a run's classes without running it (raises on a bad option)."""
    cli = TaskCLI(
        model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True,
        save_config_callback=MLflowSaveConfig, save_config_kwargs={"overwrite": True},
        run=False, args=args, parser_kwargs={"default_env": False},
    )
    if hasattr(cli.model, "tracking_uri"):  # a transfer source is looked up in this store, logger or not
        cli.model.tracking_uri = configured_tracking_uri(cli.config)
    return cli


def main(args: list[str] | None = None, extra_callbacks: list | None = None,
         after_fit: Callable[[], None] | None = None) -> TaskCLI:
    """Fit, then test the best checkpoint; ``extra_callbacks`` (e.g. Optuna pruning) join the trainer;
    ``after_fit`` runs between fitting and testing (e.g. the pruning callback's ``check_pruned`` under DDP)."""
    cli = build(args)
    cli.trainer.callbacks.extend(extra_callbacks or [])
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
        if after_fit is not None:
            after_fit()
        if cli.trainer.interrupted:
            _mark(cli, "KILLED")
            return cli
        if cli.config.test_after_fit:
            best = None if cli.trainer.fast_dev_run else "best"
            cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best)
    except KeyboardInterrupt:
        _mark(cli, "KILLED")
        raise
    except BaseException:
        _mark(cli, "FAILED")
        raise
    return cli


if __name__ == "__main__":
    main()
