"""``make train TASK=<name>``: fit, test on the best checkpoint, log it all to MLflow.

One config system: LightningCLI reads ``configs/defaults.yaml`` and
``configs/tasks/<TASK>.yaml`` (and any ``--config`` after them); every option
can be overridden on the command line (``--trainer.max_epochs=3``). A run that
raises is marked FAILED in MLflow (KILLED when interrupted), never left RUNNING.
Every run has a folder and a name of its own (``cli/runs.py``); resume the latest run of a task with
``--ckpt_path last``, another one with ``--ckpt_path <run name>``. The run ends with a summary: where it
is, its test metrics, the next commands.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cli.quiet import silence

silence()

from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402
from lightning.pytorch.loggers import MLFlowLogger  # noqa: E402

from callbacks.checkpoint import EveryEpochCheckpoint  # noqa: E402
from callbacks.mlflow_run import MLflowRunInfo, MLflowSaveConfig  # noqa: E402
from callbacks.timeline import RunTimeline  # noqa: E402
from callbacks.weight_ema import WeightEMA  # noqa: E402
from cli.precision import hardware_precision  # noqa: E402
from cli.sources import resolve_source  # noqa: E402
from cli.summary import relative_path, run_summary  # noqa: E402
from cli.runs import NoRunError, config_names, new_run_folder, resume_folder, run_name  # noqa: E402
from datamodules.sources.readers import DataFileError, SettingError  # noqa: E402
from materials.composition import CompositionError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class TaskCLI(LightningCLI):
    """LightningCLI with the data-decided sizes linked into the net and the callbacks every run has.

    Every run checkpoints (``checkpoint``: best by the task's metric and ``last.ckpt`` after every epoch), stops early
    (``early_stopping``: the same metric and mode), logs its learning rate (``lr_monitor``), its run
    information (``run_info``) and its phase times (``timeline``), and, at ``ema.decay`` > 0, validates and keeps a
    moving average of its weights (``ema``). They are set once in
    ``configs/defaults.yaml``; a task changes a key (``early_stopping: {patience: 10}``) and lists under
    ``trainer.callbacks`` only its own (plots, baselines).
    """

    learner = ""  #: what stands in a run's name in place of the net (``random-forest`` for ``make baseline``)

    def add_arguments_to_parser(self, parser):
        parser.link_arguments("data.n_features", "model.init_args.net.init_args.n_features", apply_on="instantiate")
        for target in ("model.init_args.n_classes", "model.init_args.net.init_args.n_classes"):  # classification data
            parser.link_arguments("data.n_classes", target, apply_on="instantiate")  # (skipped where data have none)
        parser.add_lightning_class_args(EveryEpochCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.link_arguments("checkpoint.monitor", "early_stopping.monitor")  # one metric decides both
        parser.link_arguments("checkpoint.mode", "early_stopping.mode")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(MLflowRunInfo, "run_info")  # the MLflow run id in every checkpoint
        parser.add_lightning_class_args(RunTimeline, "timeline")  # every run: phase times, validation vs minutes
        parser.add_lightning_class_args(WeightEMA, "ema")  # a moving average of the weights where ema.decay > 0
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume fitting from this checkpoint ('last' = the task's last.ckpt)")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="test the best checkpoint after fitting")

    def before_instantiate_classes(self):
        """One MLflow experiment per dataset (unless the config names one), so every model and baseline on the
        same data sits in one table; a folder and a name of its own for every run (cli/runs.py); the
        precision chosen for the hardware; the folder of a SQLite MLflow store created."""
        trainer = self.config.trainer
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        logger_args = [lg.init_args for lg in loggers if getattr(lg, "init_args", None) is not None]
        dataset = Path(str(self.config.data.init_args.get("dataset", "run"))).stem
        for args in logger_args:
            if args.get("experiment_name") in (None, "", "lightning_logs"):
                args.experiment_name = dataset
            uri = args.get("tracking_uri") or ""
            if uri.startswith("sqlite:///"):
                Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.task, self.profile = config_names(self.config.get("config"))
        base = next((a.get("run_name") for a in logger_args if a.get("run_name")), None) or self.task or dataset
        self.task = self.task or base
        if not trainer.default_root_dir:  # a plain run: a folder of its own under outputs/<task>/
            self._own_run_folder(base, logger_args)
        if not self.config.checkpoint.get("dirpath"):
            self.config.checkpoint.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        checkpoint_dir = Path(self.config.checkpoint.dirpath)
        precision_from = "config"
        if trainer.get("precision") is None:  # the config leaves it to the hardware (cli/precision.py)
            trainer.precision = hardware_precision(str(trainer.get("accelerator") or "auto"))
            precision_from = "chosen for this hardware"
        if trainer.get("sync_batchnorm") and not _gpu_run(trainer):
            import warnings

            warnings.warn("sync_batchnorm is GPU-only in torch DDP: on CPU each process keeps its own BatchNorm "
                          "statistics (turned off)", stacklevel=1)
            trainer.sync_batchnorm = False
        if trainer.get("enable_progress_bar") and not sys.stderr.isatty():  # a log file: one line an epoch instead
            trainer.enable_progress_bar = False
            self.config.timeline.epoch_lines = True
        run_id = self._resumed_run_id(checkpoint_dir)
        for args in logger_args:
            if run_id and not args.get("run_id"):
                args.run_id = run_id
        if not _other_rank():  # what was decided here, in one line (the whole config: config.yaml in the run)
            experiment = next((f", MLflow experiment {a.experiment_name!r}" for a in logger_args), "")
            print(f"run folder {relative_path(trainer.default_root_dir)}{experiment}, "
                  f"precision {trainer.precision} ({precision_from})", file=sys.stderr, flush=True)

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        """The forced callbacks less those the trainer turns off: no checkpoints without checkpointing, no
        learning-rate log without a logger, no early stopping without validation (``make bench``), no moving
        average of the weights at ``ema.decay: 0``."""
        off = []
        if config.get("enable_checkpointing") is False:
            off.append(ModelCheckpoint)
        if config.get("logger") is False:
            off.append(LearningRateMonitor)
        if config.get("limit_val_batches") == 0:
            off.append(EarlyStopping)
        kept = [cb for cb in callbacks
                if not isinstance(cb, tuple(off)) and not (isinstance(cb, WeightEMA) and cb.decay == 0)]
        return super()._instantiate_trainer(config, kept)

    def _own_run_folder(self, base: str, logger_args) -> None:
        """``outputs/<task>/<run name>``: a new folder and unique run name, or the folder of the run resumed."""
        ckpt = self.config.get("ckpt_path")
        if ckpt and not Path(ckpt).is_file():  # ``last`` or a run's name
            folder = resume_folder(self.task, ckpt)
            self.config.ckpt_path = str(folder / "checkpoints" / "last.ckpt")
        elif ckpt and Path(ckpt).parent.name == "checkpoints":  # a checkpoint of a run folder: that run goes on
            folder = Path(ckpt).parent.parent
        elif _other_rank() and os.environ.get(RUN_FOLDER_ENV):  # a DDP rank launched by rank 0: its folder
            folder = Path(os.environ[RUN_FOLDER_ENV])
        else:
            net = str(self.config.model.init_args.get("net", {}).get("class_path", "") or "").rsplit(".", 1)[-1]
            if self.learner:
                base, net = f"{base}-{self.learner}", None
            folder, name = new_run_folder(self.task, run_name(base, net, self.config.get("seed_everything")))
            for args in logger_args:
                if not args.get("run_id"):
                    args.run_name = name
        os.environ[RUN_FOLDER_ENV] = str(folder)  # the ranks rank 0 launches (DDP) inherit it: one folder
        self.config.trainer.default_root_dir = str(folder)

    def _resumed_run_id(self, checkpoint_dir: Path) -> str | None:
        """The MLflow run recorded in the checkpoint being resumed, if any."""
        ckpt = self.config.get("ckpt_path")
        if not ckpt:
            return None
        return checkpoint_run_id(checkpoint_dir / "last.ckpt" if ckpt == "last" else Path(ckpt))


RUN_FOLDER_ENV = "DEEP_MATERIALS_RUN_FOLDER"


def _other_rank() -> bool:
    """Whether this process is a DDP rank other than 0 (set by the launcher: Lightning's, torchrun, SLURM)."""
    return any(int(os.environ.get(key, "0") or 0) > 0 for key in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"))


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
    return cli


def main(args: list[str] | None = None, extra_callbacks: list | None = None,
         after_fit: Callable[[], None] | None = None, resume_with: str | None = None) -> TaskCLI:
    """Fit, then test the best checkpoint and print where the run is; ``extra_callbacks`` (e.g. Optuna pruning)
    join the trainer; ``after_fit`` runs between fitting and testing (e.g. the pruning check under DDP);
    ``resume_with``: how an interrupted run goes on, for commands that run this one (default: ``make train``)."""
    cli = build(args)
    cli.trainer.callbacks.extend(extra_callbacks or [])
    with sigterm_interrupts(cli.trainer):  # a SIGTERM before Lightning's own handling marks the run too
        try:
            _tag(cli)
            resolve_source(cli.model, configured_tracking_uri(cli.config))  # best:<dataset>, MLflow models: a file
            cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
            if after_fit is not None:
                after_fit()
            if cli.trainer.interrupted:
                _killed(cli, resume_with)
                return cli
            metrics = {}
            if cli.config.test_after_fit:
                best = None if cli.trainer.fast_dev_run else "best"
                metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)[0]
            if cli.trainer.is_global_zero:
                print("\n" + run_summary(cli.trainer, cli.datamodule, metrics, cli.task), flush=True)
        except KeyboardInterrupt:
            _killed(cli, resume_with)
            raise
        except SystemExit:  # Lightning ends an interrupted fit with exit(1) once it has shut down
            if not cli.trainer.interrupted:
                _mark(cli, "FAILED")
                raise
            _killed(cli, resume_with)
            raise SystemExit(130) from None
        except BaseException:
            _mark(cli, "FAILED")
            raise
    return cli


@contextmanager
def sigterm_interrupts(trainer: Trainer) -> Iterator[None]:
    """A SIGTERM raises KeyboardInterrupt (the run is then marked KILLED, as after Ctrl-C) wherever Lightning does
    not handle it: while the data are prepared or labelled (before fit installs its handler) and between fit and
    test. Inside fit and test Lightning's handler notes the signal first and calls this one, which then leaves
    the stop to Lightning (at the end of the batch)."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupt(signum, frame):
        if not trainer.received_sigterm:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _tag(cli: TaskCLI) -> None:
    """Tags that tell runs apart in the MLflow UI: task, profile, seed (net, device, commit: callbacks.MLflowRunInfo)."""
    tags = {"task": cli.task, "profile": cli.profile or "default", "seed": str(cli.config.get("seed_everything"))}
    for logger in cli.trainer.loggers:
        if isinstance(logger, MLFlowLogger) and cli.trainer.is_global_zero:
            for key, value in tags.items():
                logger.experiment.set_tag(logger.run_id, key, value)


def rerun_resumes(command: str, kept: str) -> str:
    """``resume_with`` for a command whose runs are pieces of a whole: running it again keeps ``kept`` and continues
    the interrupted piece from its last checkpoint."""
    return f"the same {command} command ({kept} are kept; this one continues from its last checkpoint)"


def _killed(cli: TaskCLI, resume_with: str | None = None) -> None:
    """Mark the run KILLED and say how to go on (``resume_with``, or the ``make train`` command that does)."""
    _mark(cli, "KILLED")
    if cli.trainer.is_global_zero:
        folder = Path(cli.config.trainer.default_root_dir)
        if resume_with is None:
            go_on = folder.name if folder.parent.name == cli.task else "last"
            profile = f" PROFILE={cli.profile}" if cli.profile else ""
            resume_with = f"make train TASK={cli.task}{profile} ARGS='--ckpt_path {go_on}'"
        print(f"\ninterrupted: the MLflow run is marked KILLED, its checkpoints are in {folder / 'checkpoints'}.\n"
              f"resume: {resume_with}", file=sys.stderr, flush=True)


USER_ERRORS = (NoRunError, DataFileError, SettingError, CompositionError)  # said in one line, exit code 2, no traceback

if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
