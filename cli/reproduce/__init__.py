"""``make reproduce TABLE=<name> [FOLDS=k] [ARGS=...]``: rebuild a published table or figure as Markdown.

A registry, :data:`TABLES` (name → the table's module functions). Each table trains and scores what the
table needs, returns its Markdown body, and logs its cells as MLflow runs nested under one
parent run (experiment ``reproduce``; :mod:`cli.reproduce.cells`); this module adds the hardware and the wall time, writes
``outputs/reproduce/<name>-<tasks>[-<dataset>].md`` and logs it to the parent run. Running the same command again
resumes: finished cells are read back from MLflow, not retrained.

Tables:

- ``padnet``: Figure 7.7, PADNet's k-fold accuracy for every train input (I, I-MF, I-CS) × test
  input × frozen or trainable slope filters (``--task padnet_nist`` for the NIST preset; :mod:`cli.reproduce.padnet`).
- ``crabnet``: ElemNet, IRNet and Roost (``--tasks``) on the CrabNet OQMD split over ``--seeds``,
  beside the published test MAEs (:mod:`cli.reproduce.crabnet`).
- ``elemnet``: Table 3.2, ElemNet against a Random Forest on Magpie attributes and on element
  fractions, same split, with training and one-core prediction times (:mod:`cli.reproduce.elemnet`).
- ``irnet``: Table 4.4, Random Forest, plain-17, IRNet-17 and IRNet-48 on the OQMD properties
  (``--datasets``) over ``--seeds`` (:mod:`cli.reproduce.irnet`).
- ``experimental``: Table 5.4, every trained model of the task's net in the store scored on the
  experimental (SSUB) formation enthalpies, by training dataset, scratch and transfer
  (:mod:`cli.reproduce.experimental`).
- ``sweep``: Figure 5.3, scratch and transfer against the training-set fraction (``--fractions``).
- ``transfer``: Table 5.2 on SSUB: scratch, OQMD-SC applied and transfer over ``--folds`` folds for
  ElemNet and Roost (:mod:`cli.reproduce.transfer`).
- ``precision``: the task trained in float32 and in bf16-mixed, same seeds and budget: test MAE, training
  minutes, and the validation curves against minutes (:mod:`cli.reproduce.precision`).
- ``active-learning``: acquired rows (``--acquisitions``: ``std``, ``cluster``, ``typical``, ``lcmd``) against
  random ones, same pool, rounds and seeds (:mod:`cli.reproduce.active_learning`).
- ``learning-curve``: a microstructure CNN (default ``localization``) on nested shares of its training
  elements (``--fractions``) beside its run's baselines, with a power law's estimate of the next doubling
  (:mod:`cli.reproduce.learning_curve`).
- ``search``: does the architecture search pay? The task's own net (default ``irnet``: IRNet-17)
  against the best trial of its Optuna study, same budget and split, over ``--seeds``
  (:mod:`cli.reproduce.search_pays`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cli.configs import task_configs
from cli.reproduce import (active_learning, crabnet, elemnet, experimental, irnet, learning_curve, padnet, precision,
                           search_pays, transfer)
from cli.reproduce.cells import Cells, config_digest, hardware


@dataclass(frozen=True)
class Table:
    build: Callable[[argparse.Namespace, list[str], Cells], str]
    default_task: str
    key: Callable[[argparse.Namespace, list[str]], list[str]]  # what identifies a reproduction (resume key)
    probe: Callable[[argparse.Namespace, list[str]], list[str]]  # training args validated before any cell runs


def _task_and_extra(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    return task_configs(opts.task, opts.profile) + extra


TABLES: dict[str, Table] = {
    "padnet": Table(padnet.padnet_figure_7_7, "padnet", padnet.padnet_key, padnet.padnet_probe),
    "search": Table(search_pays.search_pays, "irnet", search_pays.key_parts, _task_and_extra),
    "crabnet": Table(crabnet.crabnet_table, "roost", crabnet.key_parts, crabnet.probe),
    "transfer": Table(transfer.transfer_table, "elemnet_transfer", transfer.key_parts, transfer.probe),
    "elemnet": Table(elemnet.elemnet_table, "elemnet", elemnet.key_parts, elemnet.probe),
    "irnet": Table(irnet.irnet_table, "irnet", irnet.key_parts, irnet.probe),
    "experimental": Table(experimental.experimental_table, "elemnet", experimental.key_parts, experimental.probe),
    "precision": Table(precision.precision_table, "irnet", precision.key_parts, _task_and_extra),
    "active-learning": Table(active_learning.active_learning_table, "elemnet", active_learning.key_parts,
                             _task_and_extra),
    "sweep": Table(transfer.sweep_table, "elemnet_transfer",
                   lambda opts, extra: [*opts.tasks[:1], str(opts.folds), *map(str, transfer.sweep_fractions(opts)),
                                        *extra],
                   transfer.probe),
    "learning-curve": Table(learning_curve.learning_curve_table, "localization", learning_curve.key_parts,
                            learning_curve.probe),
}


DEFAULT_TASKS = {"experimental": ["elemnet"], "crabnet": ["elemnet", "irnet", "roost"],
                 "transfer": ["elemnet_transfer", "roost_transfer"]}


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
    ap.add_argument("--fractions", type=float, nargs="+", default=None,
                    help="sweep: training-set fractions (default 0.1, 0.2, ..., 1); learning-curve: shares of the "
                         "training elements (default 0.25 0.5 1)")
    ap.add_argument("--rounds", type=int, default=5, help="active-learning: rounds per arm")
    ap.add_argument("--al-batch", dest="al_batch", type=int, default=1000, help="active-learning: rows acquired a round")
    ap.add_argument("--initial", type=int, default=1000, help="active-learning: random rows labelled first")
    ap.add_argument("--acquisitions", nargs="+", default=["std", "random"], choices=list(active_learning.NAMES),
                    help="active-learning: the acquisitions compared (random, the baseline, always among them)")
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
    wall, training = time.perf_counter() - start, cells.training_seconds()
    # one file per table, tasks and dataset: Roost's transfer table does not overwrite ElemNet's, nor MP's SSUB's
    label = "-".join([*opts.tasks] + ([str(opts.data["dataset"])] if opts.data.get("dataset") else []))
    text = (f"# make reproduce TABLE={opts.table} ({label})\n\n{body}\nhardware: {hardware()}\n"
            f"wall time: {wall / 60:.1f} min (this invocation; cells finished earlier were read back); "
            f"the cells' training (a resumed cell: its last piece), summed: {training / 60:.1f} min\n"
            f"command: python -m cli.reproduce {' '.join(argv)}\n")
    out = Path(opts.output or Path("outputs") / "reproduce" / f"{opts.table}-{label}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    cells.client.log_text(cells.parent_id, text, f"{opts.table}.md")
    cells.client.log_metric(cells.parent_id, "wall_seconds", wall)
    cells.client.log_metric(cells.parent_id, "training_seconds", training)
    cells.client.set_terminated(cells.parent_id, "FINISHED")
    print(text)
    return text

