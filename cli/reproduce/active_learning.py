"""``make reproduce TABLE=active-learning [TASK=elemnet] [OPTS='--seeds 0 1 2 --rounds 5 --al-batch 1000
--initial 1000 --acquisitions std cluster typical lcmd random'] ARGS='--model.init_args.uncertainty=ensemble'``:
does acquiring rows pay?

For every seed, ``make active-learn`` once per acquisition over the same pool (the task's training split, labels
hidden), the same initial rows and the same per-round training: the rows of largest predictive σ (``std``), the
most uncertain row of each of as many k-means clusters of the pool (``cluster``), the most typical row of each of the
largest clusters without labels (``typical``), the farthest row of the worst-covered cluster in the net's last
hidden layer, again and again (``lcmd``), and random rows (``random``, the baseline, always run). The table gives
the test MAE after each round (mean ± std over seeds) for each, and how many labels each acquisition needed to
reach the random arm's final MAE (interpolated between rounds); ``active-learning-<task>.png`` draws the learning
curves. Each arm is resumable on its own
(:mod:`cli.active_learn`) and keyed by its own options, so the table resumes, and a table with another acquisition
reuses the finished arms of the others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cli.configs import task_configs
from cli.reproduce.cells import mean_std

NAMES = {"std": "most uncertain (std)", "cluster": "most uncertain per cluster",
         "typical": "most typical of uncovered clusters", "lcmd": "largest cluster's farthest row (LCMD)",
         "random": "random"}


def acquisitions(opts: argparse.Namespace) -> list[str]:
    """The compared acquisitions in a fixed order, random (the baseline) last and always there."""
    return [a for a in NAMES if a in opts.acquisitions or a == "random"]


def key_parts(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    return [opts.task, str(opts.rounds), str(opts.al_batch), str(opts.initial), *map(str, opts.seeds),
            *acquisitions(opts)[:-1], *extra]


def labels_to_reach(labels: np.ndarray, mae: np.ndarray, target: float) -> float:
    """The first label count at which ``mae`` (one value per round) falls to ``target``, linear between rounds;
    NaN if it never does."""
    below = np.flatnonzero(mae <= target)
    if not len(below):
        return float("nan")
    i = below[0]
    if i == 0:
        return float(labels[0])
    t = (mae[i - 1] - target) / (mae[i - 1] - mae[i])
    return float(labels[i - 1] + t * (labels[i] - labels[i - 1]))


def active_learning_table(opts: argparse.Namespace, extra: list[str], cells) -> str:
    from cli.active_learn import ActiveLearning

    args = task_configs(opts.task, opts.profile) + extra
    arms = acquisitions(opts)
    curves: dict[str, list[np.ndarray]] = {a: [] for a in arms}
    labels = None
    for seed in opts.seeds:
        for acquisition in arms:
            arm = ActiveLearning(opts.task, opts.rounds, opts.al_batch, opts.initial, acquisition, seed, args)
            curve = arm.run()
            cells.seconds_elsewhere += arm.training_seconds()
            labels = np.array([n for n, _ in curve])
            curves[acquisition].append(np.array([m for _, m in curve]))
            cells.client.log_metric(cells.parent_id, f"{acquisition}/final_test_mae_seed{seed}", curve[-1][1])
    rows = [f"| {n:,} | " + " | ".join(mean_std([c[k] for c in curves[a]]) for a in arms) + " |"
            for k, n in enumerate(labels)]
    reached = []
    for acquisition in arms[:-1]:
        reach = [labels_to_reach(labels, s, r[-1]) for s, r in zip(curves[acquisition], curves["random"])]
        cells.client.log_metric(cells.parent_id, f"{acquisition}/labels_to_reach_random_final", float(np.nanmean(reach)))
        reached.append(f"Labels the `{acquisition}` arm needed to reach the random arm's final MAE, per seed: "
                       f"{', '.join('never' if np.isnan(r) else f'{r:,.0f}' for r in reach)} (random: {labels[-1]:,}).")
    out = Path("outputs") / "reproduce" / f"active-learning-{opts.task}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    _plot(labels, curves, opts.task, out)
    cells.client.log_artifact(cells.parent_id, str(out))
    return "\n".join([
        f"{opts.task}: {opts.initial:,} random labelled rows, then {opts.rounds - 1} rounds of {opts.al_batch:,} "
        f"acquired rows, seeds {', '.join(map(str, opts.seeds))}; test MAE (eV/atom) after each round, mean ± std "
        "over seeds.", "", "| labelled rows | " + " | ".join(NAMES[a] for a in arms) + " |",
        "|---|" + "---|" * len(arms), *rows, "", *reached, f"Learning curves: `{out}`.", ""])


def _plot(labels: np.ndarray, curves: dict[str, list[np.ndarray]], task: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for acquisition, seeds in curves.items():
        values = np.stack(seeds)
        ax.plot(labels, values.mean(0), "o-", label=f"{acquisition} (mean of {len(seeds)})")
        ax.fill_between(labels, values.min(0), values.max(0), alpha=0.2)
    ax.set(xlabel="labelled training rows", ylabel="test MAE (eV/atom)", title=f"{task}: active learning")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
