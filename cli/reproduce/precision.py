"""``make reproduce TABLE=precision [TASK=irnet] [OPTS='--seeds 0 1 2'] [PROFILE=cpu]``: does bf16 cost accuracy?

Trains the task with its own config twice per seed, in float32 (``32-true``) and in ``bf16-mixed``, same
seed, data and budget, and tests both on the same test set (in float32: the regression modules score
outside autocast). The table gives test MAE (mean ± std over seeds), training minutes and epochs; the
paired per-seed difference says whether bf16 moved the error by more than the seeds do. The plot
``precision-<task>.png`` (beside the Markdown and in the parent MLflow run) draws the validation MAE of
every cell against its training minutes (``RunTimeline``'s ``time/train_minutes``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cli.configs import task_configs
from cli.reproduce.cells import mean_std

PRECISIONS = ("32-true", "bf16-mixed")


def key_parts(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    return [opts.task, *map(str, opts.seeds), *extra]


def curve(client, run_id: str, metric: str = "val/mae") -> list[tuple[float, float]]:
    """(training minutes, metric) at every validation of a cell, joined on the step both were logged at."""
    minutes = {m.step: m.value for m in client.get_metric_history(run_id, "time/train_minutes")}
    return [(minutes[m.step], m.value) for m in client.get_metric_history(run_id, metric) if m.step in minutes]


def precision_table(opts: argparse.Namespace, extra: list[str], cells) -> str:
    from callbacks.timeline import curve_plot

    root = Path("outputs") / "reproduce" / "precision"
    mae: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    rows, curves = [], {}
    for precision in PRECISIONS:
        minutes, epochs = [], []
        for seed in opts.seeds:
            name = f"{opts.task}-{precision}-seed{seed}"
            done = cells.train(name, task_configs(opts.task, opts.profile) + extra +
                               [f"--seed_everything={seed}", f"--trainer.precision={precision}"], root)
            mae[precision].append(done["test/mae"])
            minutes.append(done["time/training_s"] / 60)
            epochs.append(done.get("epoch", np.nan))
            run_id, _ = cells.cell(name)
            curves[f"{precision}, seed {seed}"] = curve(cells.client, run_id)
        rows.append(f"| {precision} | {mean_std(mae[precision])} | {np.mean(minutes):.1f} | {np.mean(epochs):.0f} |")
        cells.client.log_metric(cells.parent_id, f"{precision}/test/mae_mean", float(np.mean(mae[precision])))
    diff = np.array(mae["bf16-mixed"]) - np.array(mae["32-true"])
    spread = np.std(mae["32-true"], ddof=1) if len(opts.seeds) > 1 else float("nan")
    out = root.parent / f"precision-{opts.task}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    curve_plot(curves, "val/mae", out)
    cells.client.log_artifact(cells.parent_id, str(out))
    return "\n".join([
        f"{opts.task} ({'profile ' + opts.profile if opts.profile else 'its task config'}), seeds "
        f"{', '.join(map(str, opts.seeds))}: the same seed, data and budget in float32 and in bf16-mixed; "
        "test MAE in eV/atom, mean ± std over seeds.", "",
        "| training precision | test MAE | training wall time (min, mean) | epochs |", "|---|---|---|---|", *rows, "",
        f"bf16 - float32, paired by seed: {mean_std(diff)} eV/atom; the float32 seeds' own spread (std): "
        f"{spread:.4f}. Validation MAE against training minutes: `{out}`.", ""])
