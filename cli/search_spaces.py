"""Optuna search spaces, one define-by-run function per task.

Each function asks the trial for values and returns config overrides as
``{"dotted.config.key": value}``, the same keys ``make train ARGS=...`` takes.
They follow how the authors searched by hand (diss. 3.2.2-3.2.3, 4.4): depth and
widths stack by stack, dropout where widths change, shortcut kind, learning
rate and batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

NET = "model.init_args.net.init_args"


def elemnet(trial: optuna.Trial) -> dict:
    stacks = []
    for i, width in enumerate((1024, 512, 256, 128, 64, 32)):
        layers = trial.suggest_int(f"stack{i}_layers", 0 if i in (1, 3) else 1, 4)
        scale = trial.suggest_categorical(f"stack{i}_width_scale", [0.5, 1.0])
        p = trial.suggest_float(f"stack{i}_dropout", 0.0, 0.4) if i < 4 else 0.0
        if layers:
            stacks.append([int(width * scale), layers, round(p, 3)])
    return {
        f"{NET}.stacks": stacks,
        "model.init_args.lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "data.init_args.batch_size": trial.suggest_categorical("batch_size", [128, 256, 512]),
    }


def irnet(trial: optuna.Trial) -> dict:
    stacks = []
    for i, width in enumerate((1024, 512, 256, 128, 64, 32)):
        layers = trial.suggest_int(f"stack{i}_layers", 1, 4)
        scale = trial.suggest_categorical(f"stack{i}_width_scale", [0.25, 0.5, 1.0])
        stacks.append([int(width * scale), layers])
    return {
        f"{NET}.stacks": stacks,
        f"{NET}.shortcut": trial.suggest_categorical("shortcut", ["individual", "stacked", "none"]),
        "model.init_args.lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "data.init_args.batch_size": trial.suggest_categorical("batch_size", [64, 128, 256, 512]),
    }


SPACES: dict[str, Callable[[optuna.Trial], dict]] = {"elemnet": elemnet, "irnet": irnet}


def as_args(overrides: dict) -> list[str]:
    """``--key=value`` arguments (JSON for lists) for the training CLI."""
    import json

    return [f"--{key}={json.dumps(value) if isinstance(value, (list, dict)) else value}"
            for key, value in overrides.items()]


def as_config(overrides: dict) -> dict:
    """Nested config (for a YAML ``make train`` accepts) from dotted keys."""
    config: dict = {}
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config
