"""``make search TASK=… TRIALS=N [WORKERS=k] [STORAGE=url]``: Optuna architecture search.

Each trial runs the same CLI as ``make train`` (``configs/defaults.yaml`` +
``configs/tasks/<TASK>.yaml`` + ``configs/search.yaml`` + ``--args``) with the
overrides the task's search space (``cli/search_spaces.py``) draws, and reports
``val/mae_best``; Optuna's pruning callback stops poor trials early. The study
lives in an RDB (SQLite under ``mlruns/`` by default), so a second call resumes
it and several workers share it. Every trial is an MLflow run nested under one
parent run per study, tagged with study and trial number; pruned trials end
KILLED, failing trials FAILED, and the study goes on. The best trial is written
as ``outputs/search/<study>-best.yaml`` for ``make train ARGS="--config …"``.
``--reference`` (``make search REFERENCE=1``) adds the task's own net (the paper's
architecture, learning rate and batch size) to the study as one trial, so the
searched nets are ranked against it at the same per-trial budget; the study records
the ``--args`` (per-trial budget) of every invocation as its ``trial_args``.

The objective is the task's own checkpoint metric (``monitor`` and ``mode`` of its
``ModelCheckpoint``: ``val/mae``, lower is better, for the regression tasks), read
back from the trial's MLflow run as the best value over its epochs, so it is the
same whether the trial ran in one process or several.

``--devices n`` trains every trial data-parallel (``configs/ddp.yaml`` with the
``ddp_spawn`` launcher, so the search process itself is not re-executed per rank);
rank 0 reports to the RDB study and ``check_pruned()`` turns a pruned DDP trial
into a pruned Optuna trial after fitting. Workers send heartbeats: a worker killed
mid-trial leaves a trial that the next worker to start a trial marks FAILED (its
MLflow run too) once ``3 × --heartbeat`` seconds have passed, and re-queues once.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import optuna
import yaml

from callbacks.mlflow_run import experiment_id
from cli.search_plots import search_plots
from cli.search_spaces import as_args, as_config, reference_params, space_for
from cli.configs import task_configs
from cli.train import build, main

def base_args(task: str, extra: list[str], devices: int = 1) -> list[str]:
    ddp = [f"--trainer.devices={devices}", "--trainer.strategy=ddp_spawn"] if devices > 1 else []
    return [*task_configs(task, overlays=("search", "ddp") if devices > 1 else ("search",)), *ddp, *extra]


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def n_parameters(args: list[str]) -> int:
    """Parameters of the net a training command line builds (instantiated only, no data read)."""
    return count_parameters(build(args).model)


class LostWorkerTrials:
    """Optuna's failed-trial callback for trials whose worker died: mark the trial's MLflow run FAILED,
    then retry the trial once. A plain class (no closure), so DDP's spawn launcher can pickle the study."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.retry = optuna.storages.RetryFailedTrialCallback(max_retry=1)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            client = mlflow.MlflowClient(self.tracking_uri)
            client.set_tag(run_id, "optuna.state", "FAIL (worker lost)")
            client.set_terminated(run_id, "FAILED")
        self.retry(study, trial)


def storage_for(url: str, heartbeat: int = 30, tracking_uri: str | None = None) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats: a trial whose worker died is marked FAILED after ``3 × heartbeat`` s
    (its MLflow run too) and retried once."""
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    import sqlalchemy.exc

    for attempt in range(5):  # two processes creating the schema of a new database at once: one loses, then reads it
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                failed_trial_callback=LostWorkerTrials(tracking_uri or mlflow.get_tracking_uri()))
        except sqlalchemy.exc.IntegrityError:
            if attempt == 4:
                raise
            time.sleep(1 + attempt)


class Search:
    """One study of one task: validates the space, runs trials, records the best."""

    def __init__(self, task: str, extra: list[str], study_name: str, storage: str, seed: int = 0,
                 devices: int = 1, heartbeat: int = 30, pruner: optuna.pruners.BasePruner | None = None,
                 max_params: int | str | None = None):
        self.task, self.extra, self.devices, self.space = task, extra, devices, space_for(task)
        # "task": no trial may be larger than the task's own net (e.g. the paper's IRNet-17)
        self.max_params = n_parameters(base_args(task, extra)) if max_params == "task" else max_params
        # Validate before any trial: every key the space draws must be an option of the task.
        probe = build(base_args(task, extra, devices) + as_args(self.space(optuna.create_study().ask())))
        checkpoint = probe.trainer.checkpoint_callback
        self.monitor, self.mode = checkpoint.monitor, checkpoint.mode
        logger_args = probe.config.trainer.logger.init_args
        self.client = mlflow.MlflowClient(logger_args.tracking_uri)
        self.study = optuna.create_study(
            study_name=study_name, storage=storage_for(storage, heartbeat, logger_args.tracking_uri),
            direction="minimize" if self.mode == "min" else "maximize", load_if_exists=True,
            pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
        # Seeded, and offset by the trials already there, so a resumed study draws new points.
        self.study.sampler = optuna.samplers.TPESampler(seed=seed + len(self.study.trials))
        self.experiment_id = experiment_id(self.client, logger_args.experiment_name)
        self.parent_id = self._parent_run()
        used = self.study.user_attrs.get("trial_args", [])  # every per-trial budget this study has run with
        if shlex.join(extra) not in used:
            self.study.set_user_attr("trial_args", [*used, shlex.join(extra)])

    def enqueue_reference(self) -> None:
        """Put the task's own net (e.g. the paper's IRNet-17 with the task's learning rate and batch size) in
        the study as its next trial, once, so the searched nets are ranked against it at the same per-trial
        budget; refuses if the space cannot draw exactly that net."""
        if any("reference" in t.user_attrs for t in self.study.trials):
            return
        base = base_args(self.task, self.extra)
        task_run = build(base)
        params = reference_params(self.task, task_run.config)
        size = count_parameters(task_run.model)
        drawn = n_parameters(base + as_args(self.space(optuna.trial.FixedTrial(params))))
        if drawn != size:
            raise SystemExit(f"the {self.task} space draws {drawn:,} parameters for the task's own net of {size:,}")
        self.study.enqueue_trial(params, user_attrs={"reference": f"{self.task} (task config)"})

    def _parent_run(self) -> str:
        parent = self.study.user_attrs.get("mlflow_parent_run_id")
        if parent is None:
            run = self.client.create_run(self.experiment_id, run_name=f"search-{self.study.study_name}",
                                         tags={"optuna.study": self.study.study_name, "task": self.task})
            parent = run.info.run_id
            self.study.set_user_attr("mlflow_parent_run_id", parent)
        self.client.update_run(parent, status="RUNNING")
        return parent

    def objective(self, trial: optuna.Trial) -> float:
        from optuna_integration import PyTorchLightningPruningCallback

        overrides = self.space(trial)
        run = self.client.create_run(self.experiment_id, run_name=f"{self.task}-trial-{trial.number}", tags={
            "mlflow.parentRunId": self.parent_id, "optuna.study": self.study.study_name,
            "optuna.trial": str(trial.number)})
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        trial.set_user_attr("overrides", overrides)
        args = base_args(self.task, self.extra, self.devices) + as_args(overrides) + [
            f"--trainer.logger.init_args.run_id={run.info.run_id}",
            f"--trainer.default_root_dir=outputs/search/{self.study.study_name}/trial-{trial.number}"]
        if self.max_params:
            size = n_parameters(args)
            trial.set_user_attr("n_parameters", size)
            if size > self.max_params:
                self.client.set_tag(run.info.run_id, "optuna.state", "PRUNED (over the parameter budget)")
                self.client.set_terminated(run.info.run_id, "KILLED")
                raise optuna.TrialPruned(f"{size:,} parameters > the budget of {self.max_params:,}")
        pruning = PyTorchLightningPruningCallback(trial, monitor=self.monitor)
        try:
            main(args, extra_callbacks=[pruning], after_fit=pruning.check_pruned,
                 resume_with="the same make search command (the study keeps its finished trials and draws new ones)")
        except optuna.TrialPruned:
            self.client.set_tag(run.info.run_id, "optuna.state", "PRUNED")
            self.client.set_terminated(run.info.run_id, "KILLED")
            raise
        except Exception:
            self.client.set_terminated(run.info.run_id, "FAILED")
            raise
        history = [m.value for m in self.client.get_metric_history(run.info.run_id, self.monitor)]
        if not history:
            raise RuntimeError(f"trial {trial.number} recorded no {self.monitor}")
        return float(min(history) if self.mode == "min" else max(history))

    def finished_trials(self) -> int:
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        return len(self.study.get_trials(deepcopy=False, states=done))

    def run(self, n_trials: int) -> None:
        """Run ``n_trials`` more trials in this process; a failing trial is recorded and the study goes on."""
        if n_trials > 0:
            self.study.optimize(self.objective, n_trials=n_trials, catch=(Exception,))

    def record_best(self) -> Path | None:
        done = [t for t in self.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        self.client.set_terminated(self.parent_id, "FINISHED")
        if not done:
            print("no trial completed", file=sys.stderr)
            return None
        best = self.study.best_trial
        objective = f"{self.monitor}_best"
        self.client.log_metric(self.parent_id, "best/" + objective, best.value)
        # tags, not params: a resumed study may find a new best, and MLflow params are write-once
        for key, value in best.params.items():
            self.client.set_tag(self.parent_id, f"best/{key}", str(value))
        self.client.set_tag(self.parent_id, "best_trial", str(best.number))
        path = Path("outputs/search") / f"{self.study.study_name}-best.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (f"# Best of study {self.study.study_name!r}: trial {best.number}, {objective} = {best.value:.5f}\n"
                  f"# make train TASK={self.task} ARGS=\"--config {path}\"\n")
        path.write_text(header + yaml.safe_dump(as_config(best.user_attrs["overrides"]), sort_keys=False))
        self.client.log_artifact(self.parent_id, str(path))
        with tempfile.TemporaryDirectory() as tmp:
            for plot in search_plots(self.study, Path(tmp)):
                self.client.log_artifact(self.parent_id, str(plot), "plots")
        print(f"best trial {best.number}: {objective} = {best.value:.5f}; config written to {path}")
        return path


def main_cli(argv: list[str] | None = None) -> Path | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--trials", type=int, default=20, help="trials the study should have when done (all workers)")
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the study")
    ap.add_argument("--storage", default="sqlite:///mlruns/optuna.db", help="Optuna RDB URL (PostgreSQL for many machines)")
    ap.add_argument("--study", default=None, help="study name (default: the task)")
    ap.add_argument("--args", default="", help="extra training options for every trial, e.g. '--trainer.max_epochs=5'")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed (worker i uses seed + i)")
    ap.add_argument("--devices", type=int, default=1, help="data-parallel processes per trial (ddp_spawn)")
    ap.add_argument("--max_params", default=None, type=lambda v: v if v == "task" else int(v),
                    help="prune trials whose net has more parameters ('task': more than the task's own net)")
    ap.add_argument("--heartbeat", type=int, default=30,
                    help="seconds between a worker's heartbeats; a silent trial is FAILED after 3x this")
    ap.add_argument("--reference", action="store_true",
                    help="put the task's own net in the study as a trial (once), to rank the searched nets against")
    ap.add_argument("--worker_trials", type=int, default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    study_name = opts.study or opts.task
    search = Search(opts.task, shlex.split(opts.args), study_name, opts.storage, opts.seed, opts.devices,
                    opts.heartbeat, max_params=opts.max_params)
    if opts.worker_trials is not None:  # a worker started by the command below
        search.run(opts.worker_trials)
        return None
    if opts.reference:
        search.enqueue_reference()
    remaining = max(opts.trials - search.finished_trials(), 0)
    shares = [remaining // opts.workers + (i < remaining % opts.workers) for i in range(opts.workers)]
    cmd = [sys.executable, "-m", "cli.search", "--task", opts.task, "--storage", opts.storage,
           "--study", study_name, "--args", opts.args, "--devices", str(opts.devices),
           "--heartbeat", str(opts.heartbeat)] + (["--max_params", str(opts.max_params)] if opts.max_params else [])
    others = [subprocess.Popen(cmd + ["--seed", str(opts.seed + i), "--worker_trials", str(n)])
              for i, n in enumerate(shares) if n and i > 0]
    search.run(shares[0])
    failed = [p.args for p in others if p.wait() != 0]
    if failed:
        print(f"{len(failed)} worker(s) exited with an error; their finished trials are in the study", file=sys.stderr)
    return search.record_best()


if __name__ == "__main__":
    main_cli()
