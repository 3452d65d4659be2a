"""Where a run keeps its files and what it is called: one folder per run, never reused by another run.

A run of ``make train TASK=irnet`` is named after the task's run name, its net where that name does not say
it, its seed and its start time (``irnet-seed0-1203-221530``) and keeps its checkpoints in
``outputs/<task>/<run name>/checkpoints/``. A second run of the task gets a folder of its own, so the first
one's model stays as it was.

- ``--ckpt_path last`` resumes the task's latest run (the newest run folder holding a ``last.ckpt``);
  ``--ckpt_path <run name>`` resumes that run; a checkpoint path resumes the run that wrote it.
- ``latest`` as a checkpoint (``make predict TASK=irnet CKPT=latest``) is the best checkpoint of the task's
  latest run: the one documented shorthand for "the model I trained last".

A caller that sets ``trainer.default_root_dir`` itself (``make reproduce``, ``make cv``, ``make search``) owns
that folder: its checkpoints go to ``<root>/checkpoints``.
"""

from __future__ import annotations

import time
from pathlib import Path

OUTPUTS = Path("outputs")


def config_names(config_files) -> tuple[str | None, str | None]:
    """(task, profile) read from the ``--config`` files of a run: ``configs/tasks/<task>.yaml`` and
    ``configs/profiles/<profile>/<task>.yaml``; None where a run was not configured that way."""
    task = profile = None
    for item in config_files or []:
        path = Path(str(getattr(item, "absolute", item)))
        if path.parent.name == "tasks":
            task = path.stem
        elif path.parent.parent.name == "profiles":
            profile = path.parent.name
    return task, profile


def run_name(base: str, net: str | None, seed, started: float | None = None) -> str:
    """``<base>[-<net>]-seed<seed>-<MMDD-HHMMSS>``: the net only where ``base`` does not already name it."""
    parts = [base]
    if net and net.lower() not in base.lower():
        parts.append(net.lower())
    parts.append(f"seed{seed}")
    parts.append(time.strftime("%m%d-%H%M%S", time.localtime(started or time.time())))
    return "-".join(parts)


def new_run_folder(task: str, name: str, outputs: Path = OUTPUTS) -> tuple[Path, str]:
    """A folder ``outputs/<task>/<name>`` that no run has used (``-2``, ``-3``… appended on a clash)."""
    folder, k = outputs / task / name, 1
    while folder.exists():
        k += 1
        folder = outputs / task / f"{name}-{k}"
    return folder, folder.name


def run_folders(task: str, outputs: Path = OUTPUTS) -> list[Path]:
    """The task's run folders that hold a ``checkpoints/last.ckpt``, the most recently written first."""
    found = [p.parent.parent for p in (outputs / task).glob("*/checkpoints/last.ckpt")]
    return sorted(found, key=lambda folder: (folder / "checkpoints" / "last.ckpt").stat().st_mtime, reverse=True)


class NoRunError(FileNotFoundError):
    """No run of the task to resume or predict with."""


def resume_folder(task: str, ckpt: str, outputs: Path = OUTPUTS) -> Path:
    """The run folder that ``--ckpt_path <ckpt>`` continues: ``last`` = the latest run, or a run's name."""
    if ckpt == "last":
        folders = run_folders(task, outputs)
        if not folders:
            raise NoRunError(f"--ckpt_path last: no run of {task} to resume (no {outputs / task}/<run>/checkpoints/"
                             f"last.ckpt); start one without --ckpt_path")
        return folders[0]
    folder = outputs / task / ckpt
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        names = ", ".join(p.name for p in run_folders(task, outputs)[:5]) or "none yet"
        raise NoRunError(f"--ckpt_path {ckpt}: no run {folder} with checkpoints/last.ckpt (runs of {task}: {names})")
    return folder


def latest_checkpoint(task: str, outputs: Path = OUTPUTS) -> Path:
    """The best checkpoint of the task's latest run (its ``last.ckpt`` when no best was kept)."""
    folder = resume_folder(task, "last", outputs)
    best = sorted((folder / "checkpoints").glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    return best[-1] if best else folder / "checkpoints" / "last.ckpt"


def model_checkpoint(spec: str, task: str = "elemnet", outputs: Path = OUTPUTS) -> Path:
    """A local checkpoint for what a user names as a model: ``latest`` (the task's latest run), an MLflow run's
    model ``runs:/<id>/model``, a registered one ``models:/<name>/<version>`` or ``models:/<name>@<alias>``
    (downloaded once to ``outputs/downloaded/<uri>/``, from the store ``MLFLOW_TRACKING_URI`` names), or a path."""
    if spec == "latest":
        return latest_checkpoint(task, outputs)
    from cli.sources import download_checkpoint, is_mlflow_model

    if not is_mlflow_model(spec):
        return Path(spec)
    import re

    folder = outputs / "downloaded" / re.sub(r"[^A-Za-z0-9@._-]+", "_", spec).strip("_")
    found = sorted(folder.rglob("*.ckpt")) if not spec.startswith("models:/") or "@" not in spec else []
    if found:  # a run's model and a version never change; an alias may move, so it is fetched again
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    return download_checkpoint(spec, None, folder)
