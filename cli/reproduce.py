"""``make reproduce TABLE=<name> [FOLDS=k] [ARGS=...]``: rebuild a published table or figure as Markdown.

A small registry, :data:`TABLES` (name → function). Each function trains and scores what the
table needs, returns its Markdown body, and logs its cells as MLflow runs nested under one
parent run (experiment ``reproduce``); this module adds the hardware and the wall time, writes
``outputs/reproduce/<name>-<tasks>[-<dataset>].md`` and logs it to the parent run. Running the same command again
resumes: finished cells are read back from MLflow, not retrained.

Tables:

- ``padnet``: Figure 7.7, PADNet's k-fold accuracy for every train input (I, I-MF, I-CS) × test
  input × frozen or trainable slope filters (``--task padnet_nist`` for the NIST preset).
- ``crabnet``: ElemNet, IRNet and Roost (``--tasks``) on the CrabNet OQMD split over ``--seeds``,
  beside the published test MAEs (:mod:`cli.crabnet_table`).
- ``elemnet``: Table 3.2, ElemNet against a Random Forest on Magpie attributes and on element
  fractions, same split, with training and one-core prediction times (:mod:`cli.elemnet_table`).
- ``irnet``: Table 4.4, Random Forest, plain-17, IRNet-17 and IRNet-48 on the OQMD properties
  (``--datasets``) over ``--seeds`` (:mod:`cli.irnet_table`).
- ``experimental``: Table 5.4, every trained model of the task's net in the store scored on the
  experimental (SSUB) formation enthalpies, by training dataset, scratch and transfer
  (:mod:`cli.experimental_table`).
- ``sweep``: Figure 5.3, scratch and transfer against the training-set fraction (``--fractions``).
- ``transfer``: Table 5.2 on SSUB: scratch, OQMD-SC applied and transfer over ``--folds`` folds for
  ElemNet and Roost (:mod:`cli.transfer_table`).
- ``precision``: the task trained in float32 and in bf16-mixed, same seeds and budget: test MAE, training
  minutes, and the validation curves against minutes (:mod:`cli.precision_table`).
- ``search``: does the architecture search pay? The task's own net (default ``irnet``: IRNet-17)
  against the best trial of its Optuna study, same budget and split, over ``--seeds``
  (:mod:`cli.search_pays`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

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
        experiment = self.client.get_experiment_by_name("reproduce")
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("reproduce")
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
        """The cells' own training (or forest fitting) seconds, summed over every cell of this reproduction."""
        return sum(r.data.metrics.get("train_seconds", r.data.metrics.get("fit_seconds", 0.0)) for r in self.runs())

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
        from cli.train import _mark, main as train

        run_id, done = self.cell(name)
        if done is not None and "train_seconds" in done:
            return done
        resume = ["--ckpt_path", "last"] if resume_from(run_id, root / name) else []
        start = time.perf_counter()
        cli = train(args + [f"--trainer.logger.init_args.run_id={run_id}", f"--trainer.default_root_dir={root / name}",
                            *resume])
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


def score_every_test_input(cli) -> dict[str, float]:
    """A Fig. 7.7 cell's accuracy on each test input (I, I-MF, I-CS) with the best checkpoint; the 1D
    baselines are left out (one train input, one baseline: ``make cv TASK=padnet`` scores them)."""
    from callbacks.xrd_baselines import XRDBaselines
    from materials.xrd_background import INPUTS

    cli.trainer.callbacks[:] = [c for c in cli.trainer.callbacks if not isinstance(c, XRDBaselines)]
    best = None if cli.trainer.fast_dev_run else "best"
    accuracy = {}
    for test_input in INPUTS:
        cli.datamodule.set_test_input(test_input)
        metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)[0]
        accuracy[f"grid/test_{test_input}/acc"] = float(metrics["test/acc"])
    return accuracy


def padnet_figure_7_7(opts: argparse.Namespace, extra: list[str], cells: Cells) -> str:
    """Fig. 7.7: accuracy over ``opts.folds`` stratified folds for train input × test input × filters."""
    from cli.cv import fold_args
    from materials.xrd_background import INPUTS

    config = task_configs(opts.task, opts.profile)
    results: dict[tuple[str, str, str], list[float]] = {}
    for fold in range(opts.folds):
        for filters in opts.filters:
            for train_input in opts.train_inputs:
                name = f"fold{fold}-{filters}-train_{train_input}"
                args = fold_args(config + extra, opts.folds, fold) + [
                    f"--data.init_args.train_input={train_input}", "--data.init_args.test_input=I",
                    f"--model.init_args.net.init_args.trainable_filters={filters == 'trainable'}",
                    "--test_after_fit=false"]
                done = cells.train(name, args, Path("outputs") / "reproduce" / opts.task, after=score_every_test_input)
                for test_input in INPUTS:
                    results.setdefault((filters, train_input, test_input), []).append(done[f"grid/test_{test_input}/acc"])
    lines = [f"Figure 7.7 ({opts.task}): test accuracy, mean ± std over {opts.folds} stratified folds", "",
             "| slope filters | train input | test I | test I-MF | test I-CS |", "|---|---|---|---|---|"]
    for filters in opts.filters:
        for train_input in opts.train_inputs:
            row = []
            for test_input in INPUTS:
                acc = np.array(results[(filters, train_input, test_input)])
                std = acc.std(ddof=1) if len(acc) > 1 else float("nan")
                row.append(f"{acc.mean():.3f} ± {std:.3f}")
                cells.client.log_metric(cells.parent_id, f"grid/{filters}/train_{train_input}/test_{test_input}/acc_mean",
                                        float(acc.mean()))
            lines.append(f"| {filters} | {train_input} | " + " | ".join(row) + " |")
    lines += ["", "The paper (Fig. 7.7, real frames): about 84 % everywhere, the same for raw and background-removed "
              "test frames within the spread of the folds."]
    return "\n".join(lines) + "\n"


def padnet_key(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    return [opts.task, str(opts.folds), *opts.train_inputs, *opts.filters, *extra]


def padnet_probe(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    from cli.cv import fold_args

    if opts.folds < 2:
        raise SystemExit(f"--folds must be at least 2, not {opts.folds}")
    return fold_args(task_configs(opts.task, opts.profile) + extra, opts.folds, 0)


def _from(module: str, name: str, *bound) -> Callable:
    """``module.name(*args, *bound)``, imported when first called (a table's code loads only when it runs)."""
    def call(*args):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, *bound)

    return call


@dataclass(frozen=True)
class Table:
    build: Callable[[argparse.Namespace, list[str], Cells], str]
    default_task: str
    key: Callable[[argparse.Namespace, list[str]], list[str]]  # what identifies a reproduction (resume key)
    probe: Callable[[argparse.Namespace, list[str]], list[str]]  # training args validated before any cell runs


TABLES: dict[str, Table] = {
    "padnet": Table(padnet_figure_7_7, "padnet", padnet_key, padnet_probe),
    "search": Table(_from("cli.search_pays", "search_pays", task_configs), "irnet", _from("cli.search_pays", "key_parts"),
                    lambda opts, extra: task_configs(opts.task, opts.profile) + extra),
    "crabnet": Table(_from("cli.crabnet_table", "crabnet_table", task_configs), "roost",
                     _from("cli.crabnet_table", "key_parts"), _from("cli.crabnet_table", "probe", task_configs)),
    "transfer": Table(_from("cli.transfer_table", "transfer_table", task_configs), "elemnet_transfer",
                      _from("cli.transfer_table", "key_parts"), _from("cli.transfer_table", "probe", task_configs)),
    "elemnet": Table(_from("cli.elemnet_table", "elemnet_table", task_configs), "elemnet",
                     _from("cli.elemnet_table", "key_parts"), _from("cli.elemnet_table", "probe", task_configs)),
    "irnet": Table(_from("cli.irnet_table", "irnet_table", task_configs), "irnet", _from("cli.irnet_table", "key_parts"),
                   _from("cli.irnet_table", "probe", task_configs)),
    "experimental": Table(_from("cli.experimental_table", "experimental_table", task_configs), "elemnet",
                          _from("cli.experimental_table", "key_parts"),
                          _from("cli.experimental_table", "probe", task_configs)),
    "precision": Table(_from("cli.precision_table", "precision_table", task_configs), "irnet",
                       _from("cli.precision_table", "key_parts"),
                       lambda opts, extra: task_configs(opts.task, opts.profile) + extra),
    "sweep": Table(_from("cli.transfer_table", "sweep_table", task_configs), "elemnet_transfer",
                   lambda opts, extra: [*opts.tasks[:1], str(opts.folds), *map(str, opts.fractions), *extra],
                   _from("cli.transfer_table", "probe", task_configs)),
}


DEFAULT_TASKS = {"experimental": ["elemnet"], "crabnet": ["elemnet", "irnet", "roost"],
                 "transfer": ["elemnet_transfer", "roost_transfer"]}


def hardware() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads "
            f"(torch uses {torch.get_num_threads()}), {gpu}; torch {torch.__version__}")


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", choices=sorted(TABLES))
    ap.add_argument("--task", default=None, help="padnet: padnet (SLAC, default) or padnet_nist; search: irnet (default)")
    ap.add_argument("--folds", type=int, default=10, help="padnet: stratified folds; transfer: CV folds")
    ap.add_argument("--train-inputs", dest="train_inputs", nargs="+", default=["I", "I-MF", "I-CS"])
    ap.add_argument("--filters", nargs="+", default=["frozen", "trainable"], choices=["frozen", "trainable"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search, crabnet, elemnet, irnet, precision: training seeds per model")
    ap.add_argument("--tasks", nargs="+", default=None,
                    help="crabnet: the composition tasks (default elemnet irnet roost); "
                         "transfer: the transfer tasks (default elemnet_transfer roost_transfer)")
    ap.add_argument("--datasets", nargs="+", default=None, help="irnet: the OQMD properties (default: all four)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[round(0.1 * k, 1) for k in range(1, 11)],
                    help="sweep: training-set fractions")
    ap.add_argument("--profile", default=None,
                    help="every table: add configs/profiles/<profile>/<task>.yaml (e.g. paper) to the task configs")
    ap.add_argument("--study", default=None, help="search: the Optuna study (default: the task)")
    ap.add_argument("--storage", default="sqlite:///mlruns/optuna.db", help="search: the study's RDB")
    ap.add_argument("--output", default=None, help="Markdown file (default outputs/reproduce/<table>-<tasks>[-<dataset>].md)")
    ap.epilog = "after --: the task's config options, as for make train"
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    opts, extra = ap.parse_args(argv[:split]), argv[split + 1:]
    table = TABLES[opts.table]
    opts.task = opts.task or table.default_task
    opts.tasks = opts.tasks or DEFAULT_TASKS.get(opts.table, [opts.task])
    from cli.train import build

    probe = build(table.probe(opts, extra))  # validates the options before any cell trains
    opts.data = dict(probe.datamodule.hparams)  # what the cells train on, for the table's caption
    key = table.key(opts, extra) + ([f"profile={opts.profile}"] if opts.profile else []) + [config_digest(opts)]
    cells = Cells(opts.table, key, probe.config.trainer.logger.init_args.tracking_uri)
    start = time.perf_counter()
    try:
        body = table.build(opts, extra, cells)
    except BaseException:
        cells.report_failure()
        raise
    wall = time.perf_counter() - start
    # one file per table, tasks and dataset: Roost's transfer table does not overwrite ElemNet's, nor MP's SSUB's
    label = "-".join([*opts.tasks] + ([str(opts.data["dataset"])] if opts.data.get("dataset") else []))
    text = (f"# make reproduce TABLE={opts.table} ({label})\n\n{body}\nhardware: {hardware()}\n"
            f"wall time: {wall / 60:.1f} min (this invocation; cells finished earlier were read back); "
            f"the cells' training (a resumed cell: its last piece), summed: {cells.training_seconds() / 60:.1f} min\n"
            f"command: python -m cli.reproduce {' '.join(argv)}\n")
    out = Path(opts.output or Path("outputs") / "reproduce" / f"{opts.table}-{label}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    cells.client.log_text(cells.parent_id, text, f"{opts.table}.md")
    cells.client.log_metric(cells.parent_id, "wall_seconds", wall)
    cells.client.set_terminated(cells.parent_id, "FINISHED")
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
