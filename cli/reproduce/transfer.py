"""``make reproduce TABLE=transfer [FOLDS=10] [OPTS='--tasks elemnet_transfer roost_transfer']``.

Table 5.2 of the dissertation (Jha et al., Nat. Commun. 10, 5316 (2019)) on the SSUB experimental
formation enthalpies (the tasks' default; ``-- --data.init_args.dataset=mp_on_hull`` for Materials
Project on-hull compounds): for each transfer task, over the same k folds,

- ``scratch``: the net trained from random weights on the fold ("EXP-SC"),
- ``OQMD-SC applied``: the OQMD-trained source net tested on the fold as it is (a run with learning
  rate 0: one pass over the training batches leaves every weight where the source put it),
- ``transfer``: the source net with every layer fine-tuned on the fold,

with the mean ± sample standard deviation of the test MAE over folds, training wall time, and the
published numbers beside ours. The source is the task's ``init_from`` (by default the best finished
run of the same net on OQMD in this MLflow store, so ``make reproduce TABLE=crabnet`` or
``make train TASK=elemnet`` first). Cells are MLflow runs nested under the reproduction's parent run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cli.configs import task_configs

# Table 5.2 (10-fold CV): scratch, OQMD-SC applied, transfer on SSUB experimental (1,963 observations)
# and Materials Project on-hull (23,641; here mp_on_hull, datamodules/sources/derived.py)
PUBLISHED = {("elemnet_transfer", "ssub"): ("0.1299", "0.1354", "0.0642"),
             ("elemnet_transfer", "mp_on_hull"): ("0.0326", "0.1084", "0.0248")}
ARMS = {
    "scratch": ["--model.init_args.init_from=null"],
    "applied": ["--model.init_args.lr=0", "--trainer.max_epochs=1"],
    "transfer": [],
}
LABELS = {"scratch": "scratch", "applied": "OQMD-SC applied", "transfer": "transfer"}


def key_parts(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    opts.sources = {task: pinned_source(task, opts.profile, extra) for task in opts.tasks}
    return [*opts.tasks, str(opts.folds), *extra, *(f"{task}.source={src}" for task, src in opts.sources.items())]


def pinned_source(task: str, profile: str | None, extra: list[str]) -> str | None:
    """The source the task's cells fine-tune, resolved once: ``best:<dataset>`` becomes the run(s) it names now,
    so every cell starts from the same net even if a better one finishes meanwhile, and a reproduction from
    another source is another table (its key), never one that reads back cells of the old source."""
    from cli.sources import expand_sources
    from cli.train import build, configured_tracking_uri

    cli = build(task_configs(task, profile) + extra)
    source = cli.model.hparams.get("init_from")
    if isinstance(source, str):
        source = expand_sources(source, type(cli.model.net).__name__, configured_tracking_uri(cli.config))
    return source


def probe(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    from cli.cv import fold_args

    if opts.folds < 2:
        raise SystemExit(f"--folds must be at least 2, not {opts.folds}")
    for task in opts.tasks:
        task_configs(task, opts.profile)
    return fold_args(task_configs(opts.tasks[0], opts.profile) + extra, opts.folds, 0)


def transfer_table(opts: argparse.Namespace, extra: list[str], cells) -> str:
    from cli.cv import fold_args

    root = Path("outputs") / "reproduce" / "transfer" / str(opts.data.get("dataset"))  # one folder per dataset
    lines = [f"Transfer learning on {opts.data.get('dataset')}, {opts.folds}-fold CV (duplicates merged before "
             f"splitting), test MAE in eV/atom, mean ± std over folds; published: Table 5.2 (10 folds).", "",
             "| task | arm | test MAE (ours) | test MAE (published) | source | training wall time (min/fold) |",
             "|---|---|---|---|---|---|"]
    for task in opts.tasks:
        for k, (arm, arm_args) in enumerate(ARMS.items()):
            pin = [f"--model.init_args.init_from={opts.sources[task]}"] if arm != "scratch" and opts.sources[task] else []
            runs = [cells.train(f"{task}-{arm}-fold{fold}", fold_args(task_configs(task, opts.profile) + extra,
                                                                        opts.folds, fold) + pin + arm_args, root)
                    for fold in range(opts.folds)]
            mae = np.array([r["test/mae"] for r in runs])
            minutes = np.mean([r["train_seconds"] for r in runs]) / 60
            published = PUBLISHED.get((task, opts.data.get("dataset")), ("—",) * 3)[k]
            source = "—" if arm == "scratch" else _source(cells, f"{task}-{arm}-fold0")
            lines.append(f"| {task} | {LABELS[arm]} | {mae.mean():.4f} ± {mae.std(ddof=1):.4f} | {published} "
                         f"| {source} | {minutes:.1f} |")
            cells.client.log_metric(cells.parent_id, f"{task}/{arm}/test/mae_mean", float(mae.mean()))
            cells.client.log_metric(cells.parent_id, f"{task}/{arm}/test/mae_std", float(mae.std(ddof=1)))
    return "\n".join(lines) + "\n"


def _source(cells, name: str) -> str:
    run_id, _ = cells.cell(name)
    return f"`{cells.client.get_run(run_id).data.tags.get('transfer.source', '?')}`"


# Fig. 5.3 (SSUB, 10-fold CV): test MAE at 10 % and at 100 % of the training folds
FIG_5_3 = {"scratch": (0.474, 0.124), "transfer": (0.108, 0.064)}


def sweep_fractions(opts: argparse.Namespace) -> list[float]:
    """``--fractions``, 10 % to 100 % in steps of 10 by default (the figure's)."""
    return opts.fractions or [round(0.1 * k, 1) for k in range(1, 11)]


def sweep_table(opts: argparse.Namespace, extra: list[str], cells) -> str:
    """Fig. 5.3: scratch and transfer at each training-set fraction (``--fractions``) over the same folds."""
    from cli.cv import fold_args

    task = opts.tasks[0]
    root = Path("outputs") / "reproduce" / "sweep"
    means: dict[str, list[float]] = {"scratch": [], "transfer": []}
    stds: dict[str, list[float]] = {"scratch": [], "transfer": []}
    fractions = sweep_fractions(opts)
    for fraction in fractions:
        for arm in means:
            runs = [cells.train(f"{task}-{arm}-f{fraction:g}-fold{fold}",
                                fold_args(task_configs(task, opts.profile) + extra, opts.folds, fold) + ARMS[arm]
                                + [f"--data.init_args.train_fraction={fraction}"], root) for fold in range(opts.folds)]
            mae = np.array([r["test/mae"] for r in runs])
            means[arm].append(float(mae.mean()))
            stds[arm].append(float(mae.std(ddof=1)))
    plot = _sweep_plot(fractions, means, stds, task)
    cells.client.log_artifact(cells.parent_id, str(plot), "plots")
    lines = [f"{task} on {opts.data.get('dataset')}: test MAE (eV/atom, mean ± std over {opts.folds} folds) against "
             f"the fraction of each training fold used; published (Fig. 5.3, 10 folds): scratch "
             f"{FIG_5_3['scratch'][0]} → {FIG_5_3['scratch'][1]}, transfer {FIG_5_3['transfer'][0]} → "
             f"{FIG_5_3['transfer'][1]} from 10 % to 100 %.", "",
             "| training fraction | scratch | transfer |", "|---|---|---|"]
    for i, fraction in enumerate(fractions):
        lines.append(f"| {fraction:g} | {means['scratch'][i]:.4f} ± {stds['scratch'][i]:.4f} "
                     f"| {means['transfer'][i]:.4f} ± {stds['transfer'][i]:.4f} |")
    return "\n".join(lines) + f"\n\nPlot: `{plot}` (and in the MLflow run).\n"


def _sweep_plot(fractions, means, stds, task) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path("outputs") / "reproduce" / f"sweep-{task}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for arm, marker in (("scratch", "o"), ("transfer", "s")):
        ax.errorbar([100 * f for f in fractions], means[arm], yerr=stds[arm], marker=marker, capsize=3, label=arm)
        ax.plot([10, 100], FIG_5_3[arm], ls=":", color="grey")
    ax.set(xlabel="training set used (%)", ylabel="test MAE (eV/atom)",
           title=f"{task}: scratch vs transfer\n(dotted: the paper's end points)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
