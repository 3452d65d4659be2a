"""Shared test helpers: run the real CLI in a scratch directory with its own MLflow store."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# The commands' default store (cli/__init__.py), set before any test module imports lightning: its MLFlowLogger
# reads MLFLOW_TRACKING_URI into its signature default at import, so a test module that imports lightning first
# (test_padnet.py) would otherwise leave later builds on MLflow 3's refused file store (relative: each test's workdir).
import cli  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


# simulated datasets small enough to generate in seconds (the smoke config subsamples real ones)
SMOKE_DATA = {
    "homogenization": ["--data.init_args.n_elements=12", "--data.init_args.size=33"],
    "localization": ["--data.init_args.n_elements=12", "--data.init_args.size=15"],
    "omnet": ["--data.init_args.semi_edge_steps=[7]", "--data.init_args.n_val=64", "--data.init_args.n_test=64",
              "--data.init_args.train_fraction=1"],
}
# Roost evaluates its padded element sets slowly on a CPU: two test batches (8,192 compositions), not 51,255
SMOKE_DATA["roost"] = ["--trainer.limit_test_batches=2"]
# XRD frames: a 24-sample library of 64^2 frames (every class twice or more), all of its training split
for _task in ("padnet", "padnet_nist"):
    SMOKE_DATA[_task] = ["--data.init_args.n_samples=24", "--data.init_args.frame_size=64", "--data.init_args.n_folds=3",
                         "--data.init_args.train_fraction=1", "--data.init_args.batch_size=8"]
# structure tasks: the first 64 crystals of flla_2015 (two Voronoi chunks), all of their training split
for _task in ("cgcnn", "irnet_structure", "irnet_flla", "elemnet_flla"):
    SMOKE_DATA[_task] = ["--data.init_args.limit=64", "--data.init_args.train_fraction=1", "--data.init_args.batch_size=16"]


def task_args(task: str, *extra: str, smoke: bool = True) -> list[str]:
    from cli.configs import task_configs

    args = task_configs(task, overlays=("smoke",) if smoke else ())
    if smoke:
        args += SMOKE_DATA.get(task, [])
    # MLflow caches one store per URI string, so each test names its own database absolutely.
    args += [f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    return args + list(extra)


# MLflow downloads loaded models into temporary folders it keeps: in pytest's session folder they go with it
SYSTEM_TMP = tempfile.gettempdir()


@pytest.fixture(scope="session", autouse=True)
def _session_tmp(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("tmp"))
    with pytest.MonkeyPatch.context() as patch:  # restores both after the session
        patch.setattr(tempfile, "tempdir", tmp)
        patch.setenv("TMPDIR", tmp)
        yield tmp


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def workdir(request, tmp_path, monkeypatch):
    """A scratch cwd with an empty ``mlruns/``; the data cache stays the shared one.

    After a passing test its checkpoints and artifacts are deleted (a whole suite would write ~10 GB); the
    folder and its databases stay, so no later test reuses the path of a database MLflow still holds open."""
    (tmp_path / "mlruns").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    yield tmp_path
    report = getattr(request.node, "report_call", None)
    if report is not None and report.passed:
        for path in sorted(tmp_path.rglob("*"), reverse=True):  # files before their folders
            if path.is_file() and path.suffix != ".db" or path.is_symlink():
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def run_module(module: str, args: list[str], cwd: Path, timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **kwargs.pop("env", {}), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def run_checkpoints(workdir: Path, task: str) -> list[Path]:
    """The ``checkpoints/`` folders of the task's runs under ``workdir/outputs/<task>/<run name>/``, oldest first."""
    return sorted((workdir / "outputs" / task).glob("*/checkpoints"), key=lambda p: p.stat().st_mtime)


def search_runs(workdir: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlruns/mlflow.db")
    return mlflow.search_runs(experiment_names=[experiment])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, process: subprocess.Popen, seconds: float = 90) -> bool:
    """Whether the MLflow server at ``url`` answers ``/health`` before ``seconds`` pass or ``process`` ends."""
    import time
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"OK":
                return True
        except OSError:
            time.sleep(0.5)
    return False


@contextlib.contextmanager
def mlflow_server(backend: str, cwd: Path, artifacts: str | None = None, port: int | None = None):
    """A real ``mlflow server`` on a loopback port (a free one unless given); yields its URL, stops it after."""
    from cli.ui import server_command, server_environment

    port = port or free_port()
    log = open(Path(cwd) / f"mlflow-server-{port}.log", "a+")
    server = subprocess.Popen(server_command(backend, port, artifacts), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                              env=server_environment())
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_health(url, server):
            log.seek(0)
            raise AssertionError(f"MLflow server did not answer /health within 90 s:\n{log.read()[-3000:]}")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _postgres_bin(name: str) -> str:
    import glob
    import shutil

    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[::-1]), None)
    if not found:
        raise AssertionError(f"PostgreSQL's {name} is not installed: `make setup` installs Debian's postgresql")
    return found


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on a free loopback port for the session; yields a URL prefix
    ``postgresql://test@127.0.0.1:<port>/`` (append a database name made by ``createdb``)."""
    import shutil

    root = Path(tempfile.mkdtemp(prefix="pytest-postgres-", dir=SYSTEM_TMP))  # not under pytest's private (0700) tree
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()

    def run(*cmd):
        out = subprocess.run(as_user + list(cmd), capture_output=True, text=True, cwd="/", timeout=120)
        assert out.returncode == 0, f"{cmd[0]} failed: {out.stderr[-2000:]}"

    run(_postgres_bin("initdb"), "-D", str(data), "-U", "test", "-A", "trust", "--no-sync")
    log = root / "server.log"
    run(_postgres_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql://test@127.0.0.1:{port}/", lambda name: run(
            _postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "test", name)
    finally:
        run(_postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
