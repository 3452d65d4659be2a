"""Shared test helpers: run the real CLI in a scratch directory with its own MLflow store."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def task_args(task: str, *extra: str, smoke: bool = True) -> list[str]:
    args = ["--config", str(CONFIGS / "defaults.yaml"), "--config", str(CONFIGS / "tasks" / f"{task}.yaml")]
    if smoke:
        args += ["--config", str(CONFIGS / "smoke.yaml")]
    # MLflow caches one store per URI string, so each test names its own database absolutely.
    args += [f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    return args + list(extra)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch cwd with an empty ``mlruns/``; the data cache stays the shared one."""
    (tmp_path / "mlruns").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return tmp_path


def run_module(module: str, args: list[str], cwd: Path, timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def search_runs(workdir: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlruns/mlflow.db")
    return mlflow.search_runs(experiment_names=[experiment])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend: str, cwd: Path, artifacts: str | None = None):
    """A real ``mlflow server`` on a free loopback port; yields its URL, stops it after."""
    import time
    import urllib.request

    from cli.ui import server_command

    port = free_port()
    server = subprocess.Popen(server_command(backend, port, artifacts), cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"OK":
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError("MLflow server did not answer /health within 90 s") from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
