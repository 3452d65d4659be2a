"""The config files a run of a task is built from, assembled in one place for ``make``, the search, the
reproductions and the tests: ``configs/defaults.yaml``, ``configs/tasks/<task>.yaml``, the task's profile
(``configs/profiles/<profile>/<task>.yaml``), then any shared overlay (``search``, ``smoke``, ``ddp``:
``configs/<name>.yaml``), each merged over the ones before it.

``python -m cli.configs TASK [--profile P] [--with NAME ...]`` prints them as command-line options
(what the Makefile's ``TASK_CONFIGS`` is).
"""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def known_tasks() -> list[str]:
    return sorted(p.stem for p in (CONFIGS / "tasks").glob("*.yaml"))


def config_files(task: str, profile: str | None = None, overlays: tuple[str, ...] = ()) -> list[Path]:
    """The files, in merge order; a task or profile that does not exist ends the command with a message."""
    files = [CONFIGS / "defaults.yaml", CONFIGS / "tasks" / f"{task}.yaml"]
    if not files[1].is_file():
        raise SystemExit(f"unknown task {task!r}. Known tasks: {' '.join(known_tasks())}")
    if profile:
        files.append(CONFIGS / "profiles" / profile / f"{task}.yaml")
        if not files[-1].is_file():
            raise SystemExit(f"no profile {profile!r} for {task}: {files[-1]}")
    return files + [CONFIGS / f"{name}.yaml" for name in overlays]


def task_configs(task: str, profile: str | None = None, overlays: tuple[str, ...] = ()) -> list[str]:
    """``config_files`` as LightningCLI options (``--config=<file>`` each)."""
    return [f"--config={path}" for path in config_files(task, profile, overlays)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--with", dest="overlays", nargs="*", default=[], help="shared overlays: search, smoke, ddp")
    opts = ap.parse_args()
    print(" ".join(task_configs(opts.task, opts.profile or None, tuple(opts.overlays))))
