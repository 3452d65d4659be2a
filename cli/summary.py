"""What a finished run prints last: where it is, how it scored, what to run next."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from callbacks.mlflow_run import shared_view_url

#: metrics in the target's unit (squared errors in its square)
_IN_UNIT = ("mae", "rmse", "ae", "std")  # ae_p50, ae_p90: percentiles of the absolute error


def format_metric(name: str, value: float, unit: str | None) -> str:
    """``mae 0.0436 eV/atom``: three decimals, or three significant digits below 0.1; ``mae_pct 4.2 %``."""
    short = name.split("/", 1)[-1]
    text = f"{value:.3g}" if 0 < abs(value) < 0.1 else f"{value:.3f}"
    if short.endswith("_pct"):
        text += " %"
    elif unit and short.split("_")[0] in _IN_UNIT:
        text += f" {unit}"
    elif unit and short.startswith("mse"):
        text += f" ({unit})²"
    return f"{short} {text}"


def run_summary(trainer, datamodule, metrics: dict[str, float], task: str | None) -> str:
    """The run's name, id and experiment, its test metrics, its checkpoint folder and the next commands."""
    lines = []
    compare_at = None
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger) and logger._initialized:
            run = logger.experiment.get_run(logger.run_id)
            compare_at = shared_view_url("http://127.0.0.1:5000", run.info.experiment_id)
            experiment = logger.experiment.get_experiment(run.info.experiment_id).name
            lines.append(f"run {run.info.run_name} ({run.info.run_id}), experiment {experiment}, "
                         f"MLflow store {logger._tracking_uri}")
    unit = getattr(datamodule, "target_unit", None)
    if metrics:
        lines.append("test: " + " · ".join(format_metric(k, float(v), unit) for k, v in sorted(metrics.items())
                                           if k.startswith("test/")))
    best = None
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            best = relative_path(cb.best_model_path or cb.last_model_path) or None
            lines.append(f"checkpoints: {relative_path(cb.dirpath)}/" + (f" (best: {Path(best).name})" if best else ""))
            break
    if best and task and hasattr(datamodule, "featurize_formulas"):
        lines.append(f"predict: make predict TASK={task} CKPT={best} INPUT=formulas.csv")
    lines.append(f"compare runs: make ui, then {compare_at or 'http://127.0.0.1:5000'}")
    return "\n".join(lines)


def relative_path(path: str | None) -> str | None:
    """``path`` relative to the working directory when inside it (what a user pastes into ``make``)."""
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
