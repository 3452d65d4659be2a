"""``make reproduce TABLE=learning-curve TASK=localization PROFILE=cpu OPTS='--fractions 0.25 0.5 1 --seeds 0'``.

Does more data help a microstructure CNN, and how much would the next doubling buy? The task is trained on
nested shares of its training elements (``--fractions``; the same validation and test elements, the same
config, one cell per share and seed), and its test error (MAE in % of the mean target) is set beside the
baselines its run scores on the same split. A power law through the CNN's points, error ∝ n^slope, fitted by
least squares in log-log, gives the slope and its extrapolation to twice the largest training set: a
fitted estimate, marked as such in the table, not a measurement. The plot ``learning-curve-<task>.png``
(beside the Markdown and in the parent MLflow run) draws every model against the number of training elements.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cli.configs import task_configs
from cli.reproduce.cells import mean_std

TASKS = ("homogenization", "localization")
DEFAULT_FRACTIONS = (0.25, 0.5, 1.0)
METRIC, BASELINES = "test/mae_pct", "test/baseline/"


def key_parts(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    return [opts.task, *map(str, opts.fractions or DEFAULT_FRACTIONS), *map(str, opts.seeds), *extra]


def probe(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    if opts.task not in TASKS:
        raise SystemExit(f"learning-curve: --task must be a microstructure CNN, one of {TASKS}; got {opts.task!r}")
    return task_configs(opts.task, opts.profile) + extra


def training_elements(cli) -> dict[str, float]:
    return {"train_elements": float(len(cli.datamodule.arrays["train"]["micro"]))}


def power_law(sizes, errors) -> tuple[float, float]:
    """(slope, error at twice the largest size) of the least-squares line through log(error) on log(size)."""
    slope, intercept = np.polyfit(np.log(sizes), np.log(errors), 1)
    return float(slope), float(np.exp(intercept + slope * np.log(2 * max(sizes))))


def learning_curve_table(opts: argparse.Namespace, extra: list[str], cells) -> str:
    fractions = opts.fractions or DEFAULT_FRACTIONS
    root = Path("outputs") / "reproduce" / "learning-curve"
    sizes, errors, budget = [], {}, []  # errors: model name → one list of per-seed errors per fraction
    for fraction in fractions:
        runs = [cells.train(f"{opts.task}-f{fraction:g}-seed{seed}",
                            task_configs(opts.task, opts.profile) + extra
                            + [f"--data.init_args.train_fraction={fraction}", f"--seed_everything={seed}"],
                            root, after=training_elements) for seed in opts.seeds]
        sizes.append(int(runs[0]["train_elements"]))
        baselines = sorted({k[len(BASELINES):-len("/mae_pct")] for r in runs for k in r
                            if k.startswith(BASELINES) and k.endswith("/mae_pct")})
        for name in ["CNN", *baselines]:
            key = METRIC if name == "CNN" else f"{BASELINES}{name}/mae_pct"
            errors.setdefault(name, []).append([r[key] for r in runs if key in r])
        budget.append((np.mean([r.get("epoch", np.nan) for r in runs]),  # epochs, training minutes (no testing)
                       np.mean([r["time/training_s"] for r in runs]) / 60))
    names = list(errors)
    table = [f"| {f:g} | {n:,} | " + " | ".join(mean_std(errors[m][i]) for m in names) + f" | {ep:.0f} | {mi:.1f} |"
             for i, (f, n, (ep, mi)) in enumerate(zip(fractions, sizes, budget))]
    cnn = [float(np.mean(e)) for e in errors["CNN"]]
    lines = [f"{opts.task} ({'profile ' + opts.profile if opts.profile else 'its task config'}), contrast "
             f"{opts.data.get('contrast')}, seeds {', '.join(map(str, opts.seeds))}: test MAE in % of the mean target "
             f"(mean ± std over seeds) on the same {opts.data.get('n_elements')}-element dataset's validation and "
             "test elements; the training elements are nested shares of one training split.", "",
             "| training fraction | training elements | " + " | ".join(names) + " | epochs | training (min) |",
             "|---" * (len(names) + 4) + "|", *table, ""]
    if len(sizes) > 1:
        slope, doubled = power_law(sizes, cnn)
        cells.client.log_metric(cells.parent_id, "cnn/slope", slope)
        lines.append(f"CNN error ∝ n^{slope:.2f} through these points (least squares, log-log); extrapolated to "
                     f"{2 * max(sizes):,} training elements: {doubled:.2f} % (a fitted estimate, not a measurement).")
    plot = _plot(sizes, errors, opts.task)
    cells.client.log_artifact(cells.parent_id, str(plot), "plots")
    for name in names:
        cells.client.log_metric(cells.parent_id, f"{name}/mae_pct_largest", float(np.mean(errors[name][-1])))
    return "\n".join(lines) + f"\n\nPlot: `{plot}` (and in the MLflow run).\n"


def _plot(sizes, errors, task) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    path = Path("outputs") / "reproduce" / f"learning-curve-{task}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, per_size in errors.items():
        mean = [np.mean(e) for e in per_size]
        std = [np.std(e, ddof=1) if len(e) > 1 else 0.0 for e in per_size]
        ax.errorbar(sizes, mean, yerr=std, marker="o" if name == "CNN" else "s", capsize=3, label=name)
    ax.set(xscale="log", xlabel="training elements", ylabel="test MAE (% of the mean)",
           title=f"{task}: error against training data")
    ax.xaxis.set_major_formatter(ScalarFormatter())  # the sizes themselves, not powers of ten
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(sizes)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
