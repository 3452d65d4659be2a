"""``make ui`` and ``make server``: a real MLflow tracking server, on loopback only.

``make ui`` serves this project's store (``mlruns/mlflow.db``) to look at runs.
``make server`` starts a tracking server with a database backend (SQLite, or
PostgreSQL for many machines) and an artifact root it serves itself, so runs
from any process log to it with ``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from cli import DEFAULT_TRACKING_URI


def server_command(backend: str = DEFAULT_TRACKING_URI, port: int = 5000,
                   artifacts: str | None = None) -> list[str]:
    """The ``mlflow server`` command line; with ``artifacts`` it also serves (stores) artifacts."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if artifacts:
        cmd += ["--serve-artifacts", "--artifacts-destination", artifacts]
    return cmd


def server_environment() -> dict[str, str]:
    """The server's environment: MLflow 3 otherwise starts a job runner and 7 huey consumers for GenAI
    evaluation jobs (10 processes, ~1.2 GB measured here) that training runs never use; without them it is the
    server and its one uvicorn worker."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
                                                                                 "false")}


def compare_views(backend: str, ui: str) -> list[tuple[str, str]]:
    """(experiment, address of its runs table with the columns that tell runs apart) for every experiment of
    the store whose runs set that view (callbacks.mlflow_run.compare_view)."""
    import mlflow

    from callbacks.mlflow_run import SHARED_VIEW_TAG, shared_view_url

    try:
        experiments = mlflow.MlflowClient(backend).search_experiments()
    except Exception:  # noqa: BLE001 - the server still starts; it reports the store's problem itself
        return []
    return [(e.name, shared_view_url(ui, e.experiment_id)) for e in experiments if SHARED_VIEW_TAG in e.tags]


def _interrupt(*_):
    raise KeyboardInterrupt


def serve(cmd: list[str], env: dict[str, str]) -> int:
    """Run the server in a session of its own until it ends or this process gets Ctrl-C, SIGTERM or SIGHUP, and
    then stop it with SIGTERM to its process group: it shuts down quietly. A terminal's Ctrl-C reaching the
    server and its uvicorn worker together instead cancels the worker's shutdown and prints a traceback."""
    server = subprocess.Popen(cmd, env=env, start_new_session=True)
    # SIGINT too: a process started with SIGINT ignored (a background job, some test runners) inherits that, and
    # Python then never raises KeyboardInterrupt for it
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        return server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        print("MLflow stopped", flush=True)
        return 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", default=DEFAULT_TRACKING_URI, help="backend store URI")
    ap.add_argument("--artifacts", default=None, help="artifact root the server stores and serves (make server)")
    ap.add_argument("--port", type=int, default=5000)
    args = ap.parse_args(argv)
    store = args.backend.removeprefix("sqlite:///")
    if args.backend.startswith("sqlite:///") and not args.artifacts and not os.path.exists(store):
        sys.exit(f"no MLflow store at {store}: train something first (make train TASK=elemnet)")
    print(f"MLflow on http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
    if not args.artifacts:  # a store of this project's runs: each experiment's runs table with its columns
        for name, url in compare_views(args.backend, f"http://127.0.0.1:{args.port}"):
            print(f"  {name}: {url}", flush=True)
    sys.exit(serve(server_command(args.backend, args.port, args.artifacts), server_environment()))


if __name__ == "__main__":
    main()
