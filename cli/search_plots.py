"""The plots a search is read by: Optuna's optimisation history, parallel coordinates and parameter importances.

Drawn with Optuna's matplotlib backend (no browser needed) into ``plots/`` of the search's parent MLflow run after
every ``make search``; a resumed study redraws them over all its trials. Watch a study while it runs with
``make search-dashboard`` (optuna-dashboard on loopback).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna


def search_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """PNG files in ``folder``: the history always; coordinates and importances once 2 finished trials differ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    plots = {"optimization_history": ovm.plot_optimization_history}
    if len(done) >= 2 and any(t.params != done[0].params for t in done):
        plots |= {"parallel_coordinate": ovm.plot_parallel_coordinate, "param_importances": ovm.plot_param_importances}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in plots.items():
        with warnings.catch_warnings():  # Optuna marks its matplotlib backend experimental
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            axes = plot(study)
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
