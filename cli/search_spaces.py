"""Optuna search spaces, one define-by-run function per architecture.

Each function asks the trial for values and returns config overrides as
``{"dotted.config.key": value}``, the same keys ``make train ARGS=...`` takes.
A task gets the space of the net its config builds (``space_for``), so every
task that trains an ElemNet, IRNet, Roost, CGCNN or one of the microstructure CNNs can
be searched. The MLP spaces follow how the authors searched by hand (diss.
3.2.2-3.2.3, 4.4): depth and widths stack by stack, dropout where widths change,
shortcut kind, learning rate and batch size; the CNN spaces draw convolution
widths, the graph space convolution count and widths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import yaml

NET = "model.init_args.net.init_args"
LR = "model.init_args.lr"
BATCH = "data.init_args.batch_size"
WIDTHS = (1024, 512, 256, 128, 64, 32)  # the MLP spaces' stack widths at scale 1: ElemNet's Table 3.1


def elemnet(trial: optuna.Trial) -> dict:
    stacks = []
    for i, width in enumerate(WIDTHS):
        layers = trial.suggest_int(f"stack{i}_layers", 0 if i in (1, 3) else 1, 4)
        scale = trial.suggest_categorical(f"stack{i}_width_scale", [0.5, 1.0])
        p = trial.suggest_float(f"stack{i}_dropout", 0.0, 0.4) if i < 4 else 0.0
        if layers:
            stacks.append([int(width * scale), layers, round(p, 3)])
    return {
        f"{NET}.stacks": stacks,
        LR: trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        BATCH: trial.suggest_categorical("batch_size", [128, 256, 512]),
    }


def irnet(trial: optuna.Trial) -> dict:
    stacks = []
    for i, width in enumerate(WIDTHS):
        layers = trial.suggest_int(f"stack{i}_layers", 1, 4)
        scale = trial.suggest_categorical(f"stack{i}_width_scale", [0.25, 0.5, 1.0])
        stacks.append([int(width * scale), layers])
    return {
        f"{NET}.stacks": stacks,
        f"{NET}.shortcut": trial.suggest_categorical("shortcut", ["individual", "stacked", "none"]),
        LR: trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        BATCH: trial.suggest_categorical("batch_size", [64, 128, 256, 512]),
    }


def roost(trial: optuna.Trial) -> dict:
    """The set model: node width, message-passing depth, heads, MLP width, the output head's depth."""
    head = [1024, 512, 256, 128, 64]
    return {
        f"{NET}.width": trial.suggest_categorical("width", [32, 64, 128]),
        f"{NET}.n_layers": trial.suggest_int("n_layers", 1, 5),
        f"{NET}.heads": trial.suggest_int("heads", 1, 4),
        f"{NET}.hidden": trial.suggest_categorical("hidden", [128, 256, 512]),
        f"{NET}.head": head[trial.suggest_int("head_skip", 0, 3):],
        LR: trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        BATCH: trial.suggest_categorical("batch_size", [128, 256, 512]),
    }


def cgcnn(trial: optuna.Trial) -> dict:
    return {
        f"{NET}.atom_width": trial.suggest_categorical("atom_width", [32, 64, 128]),
        f"{NET}.n_conv": trial.suggest_int("n_conv", 1, 5),
        f"{NET}.hidden_width": trial.suggest_categorical("hidden_width", [64, 128, 256]),
        f"{NET}.n_hidden": trial.suggest_int("n_hidden", 1, 3),
        LR: trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        BATCH: trial.suggest_categorical("batch_size", [32, 64, 128]),
    }


def homogenization_cnn(trial: optuna.Trial) -> dict:
    """Five conv+pool blocks whose filters double from a drawn first width; the two dense widths."""
    first = trial.suggest_categorical("first_channels", [4, 8, 16, 32])
    dense = trial.suggest_categorical("dense", ["512,256", "1024,512", "2048,1024"])
    return {
        f"{NET}.channels": [first * 2**i for i in range(5)],
        f"{NET}.dense": [int(d) for d in dense.split(",")],
        f"{NET}.dropout": round(trial.suggest_float("dropout", 0.0, 0.5), 3),
        LR: trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        BATCH: trial.suggest_categorical("batch_size", [8, 16, 32]),
    }


def localization_cnn(trial: optuna.Trial) -> dict:
    return {
        f"{NET}.channels": [trial.suggest_categorical("conv1_channels", [16, 32, 64]),
                            trial.suggest_categorical("conv2_channels", [32, 64, 128])],
        f"{NET}.kernel_size": trial.suggest_categorical("kernel_size", [3, 5]),
        f"{NET}.dense": [trial.suggest_categorical("dense1", [128, 256, 512]),
                         trial.suggest_categorical("dense2", [64, 128, 256])],
        LR: trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        BATCH: trial.suggest_categorical("batch_size", [256, 512, 1024]),
    }


def _stack_params(stacks, dropout_stacks=()) -> dict:
    """The stack parameters of the MLP spaces for explicit (width, layers[, dropout]) stacks."""
    if len(stacks) != len(WIDTHS):
        raise SystemExit(f"the MLP spaces draw {len(WIDTHS)} stacks; the task's net has {len(stacks)}")
    params = {}
    for i, (width, layers, *p) in enumerate(stacks):
        params[f"stack{i}_layers"], params[f"stack{i}_width_scale"] = int(layers), width / WIDTHS[i]
        if i in dropout_stacks:
            params[f"stack{i}_dropout"] = float(p[0]) if p else 0.0
    return params


def elemnet_reference(net: dict) -> dict:
    from lightning_modules.nets.elemnet import TABLE_3_1

    return _stack_params(net.get("stacks") or TABLE_3_1, dropout_stacks=range(4))


def irnet_reference(net: dict) -> dict:
    from lightning_modules.nets.irnet import stack_sizes

    return {**_stack_params(net.get("stacks") or stack_sizes(net.get("depth") or 17)),
            "shortcut": net.get("shortcut") or "individual"}


#: net class → the parameters under which its space draws the task's own net (``make search REFERENCE=1``)
REFERENCES: dict[str, Callable[[dict], dict]] = {"ElemNet": elemnet_reference, "IRNet": irnet_reference}


def reference_params(task: str, config) -> dict:
    """Trial parameters that make the task's space draw the task's own net, learning rate and batch size
    (``config``: the task's parsed training config)."""
    net = net_of(task)
    if net not in REFERENCES:
        raise SystemExit(f"no reference point for {net} (task {task!r}): REFERENCE=1 knows {', '.join(sorted(REFERENCES))}")
    params = REFERENCES[net](config.model.init_args.net.init_args.as_dict())
    return {**params, "lr": config.model.init_args.lr, "batch_size": config.data.init_args.batch_size}


SPACES: dict[str, Callable[[optuna.Trial], dict]] = {
    "ElemNet": elemnet, "IRNet": irnet, "Roost": roost, "CGCNN": cgcnn,
    "HomogenizationCNN": homogenization_cnn, "LocalizationCNN": localization_cnn,
}
TASKS = Path(__file__).resolve().parents[1] / "configs" / "tasks"


def net_of(task: str) -> str:
    """The class name of the net ``configs/tasks/<task>.yaml`` builds."""
    config = yaml.safe_load((TASKS / f"{task}.yaml").read_text())
    path = (((config.get("model") or {}).get("init_args") or {}).get("net") or {}).get("class_path", "")
    return path.rsplit(".", 1)[-1]


def space_for(task: str) -> Callable[[optuna.Trial], dict]:
    if not (TASKS / f"{task}.yaml").exists():
        raise SystemExit(f"unknown task {task!r}: no configs/tasks/{task}.yaml")
    net = net_of(task)
    if net not in SPACES:
        raise SystemExit(f"task {task!r} builds {net or 'no injected net'}; search spaces exist for the nets "
                         f"{', '.join(sorted(SPACES))}")
    return SPACES[net]


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
