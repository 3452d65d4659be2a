"""OMNet and dictionary indexing under measurement conditions the training never saw: the noise sweep.

After testing, for every condition of the datamodule's noise sweep (:data:`materials.ebsd_patterns.NOISE_SWEEP`:
the test orientations recorded with other electron counts, backgrounds, blur, read noise, a projection-centre
error), both methods index the same prepared patterns against the same dictionary. Logged per condition:
``test/sweep/<condition>/omnet/mde`` and ``test/sweep/<condition>/dictionary_indexing/mde`` (and ``mde_median``,
``mde_p90``); over the sweep, ``test/sweep/omnet_wins`` (conditions where OMNet's mean disorientation is at or
below dictionary indexing's) and ``test/sweep/worst_omnet_over_di`` (the largest ratio of the two means). The
run gets the table ``ebsd_noise_sweep.md`` and the plot ``plots/noise_sweep.png``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np

from callbacks.ebsd_baselines import disorientation_degrees, dictionary_index, net_quaternions
from callbacks.mlflow_run import log_text_artifact, mlflow_logger
from materials.ebsd_patterns import NOISE_SWEEP


def _describe(name: str) -> str:
    condition = NOISE_SWEEP.get(name)
    if condition is None:
        return ""
    noise = condition.noise
    text = (f"counts {noise.counts:g}, {noise.background_shape} background {noise.background:g}"
            + (f" (width {noise.background_width:g})" if noise.background_shape == "gaussian" else "")
            + f", blur {noise.blur:g} px, read noise {noise.read_noise:g}")
    return text + (f", PC error {list(condition.pc_error)}" if any(condition.pc_error) else "")


def sweep_plot(means: dict[str, tuple[float, float]], path: Path) -> Path:
    """Grouped bars: mean disorientation (°) of OMNet and dictionary indexing per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(means)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2), 4))
    ax.bar(x - 0.2, [means[n][0] for n in names], 0.4, label="OMNet")
    ax.bar(x + 0.2, [means[n][1] for n in names], 0.4, label="dictionary indexing")
    ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    ax.set(yscale="log", ylabel="mean disorientation (°)", title="test orientations under the noise sweep")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class NoiseSweep(pl.Callback):
    """OMNet and dictionary indexing on every noise-sweep condition of the datamodule (module doc)."""

    def on_test_end(self, trainer, pl_module):
        dm = trainer.datamodule
        if trainer.global_rank != 0 or trainer.fast_dev_run or not getattr(dm, "sweep", None):
            return
        from datamodules.simulate.ebsd import master_pattern

        phase = master_pattern().phase
        dictionary, q_true = dm.arrays["dictionary"], dm.arrays["test"]["quaternions"]
        q_dict = dictionary["quaternions"].numpy()
        metrics, means, rows = {}, {}, []
        for name, patterns in dm.sweep.items():
            xmap, _ = dictionary_index(patterns, dictionary["patterns"], q_dict, phase)
            di = disorientation_degrees(xmap.rotations.data.reshape(-1, 4), q_true)
            net = disorientation_degrees(net_quaternions(pl_module, patterns, dm.hparams.eval_batch_size)[0], q_true)
            for method, angles in (("omnet", net), ("dictionary_indexing", di)):
                metrics.update({f"test/sweep/{name}/{method}/mde": float(angles.mean()),
                                f"test/sweep/{name}/{method}/mde_median": float(np.median(angles)),
                                f"test/sweep/{name}/{method}/mde_p90": float(np.quantile(angles, 0.9))})
            means[name] = (float(net.mean()), float(di.mean()))
            rows.append(f"| {name} | {_describe(name)} | {net.mean():.3f} | {np.median(net):.3f} | "
                        f"{np.quantile(net, 0.9):.3f} | {di.mean():.3f} | {np.median(di):.3f} | "
                        f"{'yes' if net.mean() <= di.mean() else 'no'} |")
        metrics["test/sweep/omnet_wins"] = float(sum(o <= d for o, d in means.values()))
        metrics["test/sweep/worst_omnet_over_di"] = max(o / max(d, 1e-9) for o, d in means.values())
        pl_module.sweep_metrics = metrics
        logger = mlflow_logger(trainer)
        if logger is None:
            return
        logger.log_metrics(metrics)
        header = ["| condition | measurement | OMNet mean (°) | median | p90 | dictionary indexing mean (°) | median "
                  "| OMNet ≤ DI |", "|---|---|---|---|---|---|---|---|"]
        log_text_artifact(trainer, "\n".join(
            [f"{len(q_true)} test orientations under each condition, indexed against the {len(q_dict):,}-pattern "
             f"dictionary the net trained on; OMNet at or below dictionary indexing on "
             f"{int(metrics['test/sweep/omnet_wins'])} of {len(means)} conditions.", "", *header, *rows]) + "\n",
            "ebsd_noise_sweep.md")
        with tempfile.TemporaryDirectory() as tmp:
            path = sweep_plot(means, Path(tmp) / "noise_sweep.png")
            logger.experiment.log_artifact(logger.run_id, str(path), "plots")
