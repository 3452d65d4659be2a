"""What every reproduction shares: its cells as nested MLflow runs (resumable), the config digest that
keys them, the hardware line and the ``mean ± std`` cell format."""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np

from callbacks.mlflow_run import experiment_id
from cli.configs import task_configs


def config_digest(opts: argparse.Namespace) -> str:
    """sha256 of the config files the reproduction's tasks train with: an edited config starts a new
    reproduction instead of reading back cells trained with the old one."""
    digest = hashlib.sha256()
    for task in opts.tasks:
        for arg in task_configs(task, opts.profile):
            digest.update(Path(arg.split("=", 1)[1]).read_bytes())
    return f"configs={digest.hexdigest()[:16]}"


def mean_std(values) -> str:
    """``mean ± sample std`` to 4 decimals (the mean alone for one value): every table's cell format."""
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.4f}" + (f" ± {a.std(ddof=1):.4f}" if len(a) > 1 else "")


def resume_from(run_id: str, root: Path) -> str | None:
    """``"last"`` when ``root/checkpoints/last.ckpt`` was written by MLflow run ``run_id`` (an interrupted
    cell goes on from its last epoch); checkpoints that another run left in ``root`` (a reproduction with
    other options, or a failed attempt whose run is gone) are moved to ``root/checkpoints-<that run>``:
    never resumed, never mixed with this run's ``best-*.ckpt``, never deleted."""
    from cli.train import checkpoint_run_id

    checkpoints = root / "checkpoints"
    if not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        return None
    owner = checkpoint_run_id(checkpoints / "last.ckpt")
    if owner == run_id:
        return "last"
    aside = root / f"checkpoints-{owner or 'unknown'}"
    for k in range(1, 1000):
        if not aside.exists():
            break
        aside = root / f"checkpoints-{owner or 'unknown'}-{k}"
    checkpoints.rename(aside)
    print(f"{checkpoints} held another run's checkpoints ({owner or 'no last.ckpt'}): moved to {aside}", file=sys.stderr)
    return None


class Cells:
    """Nested MLflow runs of one reproduction, keyed so that a rerun finds the finished ones."""

    def __init__(self, table: str, key_parts: list[str], tracking_uri: str):
        self.client = mlflow.MlflowClient(tracking_uri)  # the task's own store, not mlflow's process-wide default
        self.experiment_id = experiment_id(self.client, "reproduce")
        self.key = hashlib.sha256("\0".join([table, *key_parts]).encode()).hexdigest()[:16]
        found = self.client.search_runs([self.experiment_id], f"tags.`reproduce.key` = '{self.key}'",
                                        order_by=["attributes.start_time DESC"])
        if found:
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            self.parent_id = self.client.create_run(self.experiment_id, run_name=f"reproduce-{table}",
                                                    tags={"reproduce.key": self.key, "reproduce.table": table}).info.run_id
            self.client.log_param(self.parent_id, "args", " ".join(key_parts)[:6000])
        self.seconds_elsewhere = 0.0  # training in runs that are not cells (active learning's rounds): added by the table

    def cell(self, name: str) -> tuple[str, dict[str, float] | None]:
        """(run id, metrics if the cell finished earlier) of the nested run ``name``."""
        runs = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}' "
                                       f"and tags.`reproduce.cell` = '{name}'")
        if runs and runs[0].info.status == "FINISHED":
            return runs[0].info.run_id, runs[0].data.metrics
        if runs:
            return runs[0].info.run_id, None
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={"mlflow.parentRunId": self.parent_id, "reproduce.cell": name})
        return run.info.run_id, None

    def runs(self) -> list:
        """Every cell (nested run) of this reproduction, finished or not."""
        return self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
                                       max_results=5000)

    def training_seconds(self) -> float:
        """The cells' own training (or forest fitting) seconds, summed over every cell of this reproduction, and
        ``seconds_elsewhere``."""
        return self.seconds_elsewhere + sum(r.data.metrics.get("train_seconds", r.data.metrics.get("fit_seconds", 0.0))
                                            for r in self.runs())

    def report_failure(self) -> None:
        """Mark the reproduction FAILED with how many of its cells finished (a rerun keeps those)."""
        runs = self.runs()
        done = sum(r.info.status == "FINISHED" for r in runs)
        self.client.set_tag(self.parent_id, "cells_finished", f"{done} of {len(runs)} started")
        self.client.set_terminated(self.parent_id, "FAILED")
        print(f"reproduction failed: {done} of {len(runs)} started cells finished; the same command resumes",
              file=sys.stderr)

    def train(self, name: str, args: list[str], root: Path, after: Callable | None = None) -> dict[str, float]:
        """Metrics of cell ``name``: trained now with ``args`` (checkpoints under ``root/name``; an
        interrupted cell resumes from its ``last.ckpt``) unless it finished earlier; ``train_seconds`` (of
        this invocation), ``n_parameters`` and the metrics that ``after(cli)`` returns are logged beside
        the task's metrics."""
        from cli.train import _mark, main as train, rerun_resumes

        run_id, done = self.cell(name)
        if done is not None and "train_seconds" in done:
            return done
        resume = ["--ckpt_path", "last"] if resume_from(run_id, root / name) else []
        start = time.perf_counter()
        cli = train(args + [f"--trainer.logger.init_args.run_id={run_id}", f"--trainer.default_root_dir={root / name}",
                            *resume], resume_with=rerun_resumes("make reproduce", "finished cells"))
        if cli.trainer.interrupted:
            raise KeyboardInterrupt
        seconds = time.perf_counter() - start
        try:
            extra = after(cli) if after else {}
        except BaseException:
            _mark(cli, "FAILED")
            raise
        self.client.log_metric(run_id, "train_seconds", seconds)
        self.client.log_metric(run_id, "n_parameters", sum(p.numel() for p in cli.model.parameters()))
        for key, value in extra.items():
            self.client.log_metric(run_id, key, value)
        _mark(cli, "FINISHED")
        return self.client.get_run(run_id).data.metrics

    def baseline(self, name: str, args: list[str]) -> dict[str, float]:
        """Metrics of cell ``name``: ``make baseline``'s Random Forest, fitted now with ``args`` unless it
        finished earlier."""
        from cli.baseline import main as baseline

        run_id, done = self.cell(name)
        if done is not None and "fit_seconds" in done:
            return done
        baseline(args + [f"--trainer.logger.init_args.run_id={run_id}"])
        self.client.set_tag(run_id, "mlflow.runName", name)  # the baseline names its runs "<task>-random-forest"
        return self.client.get_run(run_id).data.metrics


def hardware() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads "
            f"(torch uses {torch.get_num_threads()}), {gpu}; torch {torch.__version__}")
