"""make ui: a real MLflow tracking server on loopback shows the runs and their plots."""

import json
import socket
import subprocess
import time
import urllib.request

from cli.baseline import main as baseline
from cli.ui import server_command
from conftest import search_runs, task_args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_runs_and_artifacts(workdir):
    baseline(task_args("elemnet", "--data.init_args.dataset=ssub", "--data.init_args.split=random",
                       "--data.init_args.skip_bad_rows=true", "--rf.n_estimators=5"))
    run = search_runs(workdir, "ssub").iloc[0]
    port = _free_port()
    server = subprocess.Popen(server_command(str(workdir / "mlruns" / "mlflow.db"), port), cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).read() == b"OK":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("MLflow server did not answer /health within 90 s")
        body = json.dumps({"experiment_ids": [run.experiment_id]}).encode()
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                         headers={"Content-Type": "application/json"})
        runs = json.loads(urllib.request.urlopen(request, timeout=10).read())["runs"]
        assert [r["info"]["run_id"] for r in runs] == [run.run_id]
        metrics = {m["key"] for m in runs[0]["data"]["metrics"]}
        assert {"test/mae", "test/rmse", "test/r2"} <= metrics
        png = urllib.request.urlopen(f"{base}/get-artifact?path=plots/parity.png&run_uuid={run.run_id}",
                                     timeout=10).read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        server.terminate()
        server.wait(timeout=30)
