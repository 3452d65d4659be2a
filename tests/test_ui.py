"""make ui / make server: a real MLflow tracking server on loopback."""

import json
import subprocess
import urllib.request

import pytest

from cli.baseline import main as baseline
from conftest import mlflow_server, run_checkpoints, run_module, search_runs, task_args

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow

SSUB = ["--data.init_args.dataset=ssub", "--data.init_args.split=random", "--data.init_args.skip_bad_rows=true"]


def test_ui_serves_runs_and_artifacts(workdir):
    baseline(task_args("elemnet", *SSUB, "--rf.n_estimators=5"))
    run = search_runs(workdir, "ssub").iloc[0]
    with mlflow_server(f"sqlite:///{workdir}/mlruns/mlflow.db", workdir) as base:
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


def test_the_runs_table_shows_the_metric_columns_in_a_real_browser(workdir):
    """Two runs, the MLflow UI in headless Chromium at the address the summary prints: the runs table renders
    the shared view's metric and parameter columns, best run first (screenshot: ui-runs-table.png in workdir)."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium on this machine (make chromium installs Debian's)")
    from callbacks.mlflow_run import shared_view_url
    from cli.train import main

    for seed in (0, 1):
        main(task_args("elemnet", *SSUB, "--trainer.max_epochs=2", f"--seed_everything={seed}"))
    runs = search_runs(workdir, "ssub").sort_values("metrics.test/mae")
    with mlflow_server(f"sqlite:///{workdir}/mlruns/mlflow.db", workdir) as base:
        url = shared_view_url(base, runs.iloc[0].experiment_id)
        headless = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,900",
                    "--virtual-time-budget=30000", f"--user-data-dir={workdir / 'chromium'}"]
        shot = subprocess.run([*headless, f"--screenshot={workdir / 'ui-runs-table.png'}", url], capture_output=True,
                              text=True, timeout=180)
        dom = subprocess.run([*headless, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    assert (workdir / "ui-runs-table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot.stderr[-2000:]
    for column in ("test/mae", "val/mae_best", "time/train_minutes", "trainer/max_epochs", "precision"):
        assert column in dom, column
    names = list(runs["tags.mlflow.runName"])
    assert names[0] in dom and names[1] in dom and dom.index(names[0]) < dom.index(names[1])  # best first


def test_training_logs_to_a_tracking_server_through_the_environment(workdir, monkeypatch):
    import mlflow
    import pandas as pd

    with mlflow_server(f"sqlite:///{workdir}/server.db", workdir, artifacts=str(workdir / "served")) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        args = [a for a in task_args("elemnet", *SSUB, "--trainer.max_epochs=1") if "tracking_uri" not in a]
        result = run_module("cli.train", args, cwd=workdir)
        assert result.returncode == 0, result.stderr[-3000:]
        mlflow.set_tracking_uri(url)
        run = mlflow.search_runs(experiment_names=["ssub"]).iloc[0]
        assert run.status == "FINISHED" and pd.notna(run["metrics.test/mae"])
        assert run.artifact_uri.startswith("mlflow-artifacts:")
        # the runs table's shared view: the columns that tell runs apart, best first (the address the summary prints)
        experiment = mlflow.get_experiment(run.experiment_id)
        view = json.loads(experiment.tags["mlflow.sharedViewState.compare"])
        assert view["selectedColumns"][:2] == ["metrics.`test/mae`", "metrics.`val/mae_best`"]
        assert "params.`trainer/max_epochs`" in view["selectedColumns"] and "tags.`profile`" in view["selectedColumns"]
        assert view["orderByKey"] == "metrics.`test/mae`" and view["orderByAsc"] is True
        assert f"/#/experiments/{run.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey=compare" \
            in result.stdout
        model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
        assert model.predict(pd.DataFrame({"formula": ["NaCl"]})).shape == (1,)
    assert not (workdir / "mlruns" / "mlflow.db").exists()  # nothing went to the local store
    assert any((workdir / "served").rglob("parity.png"))


def test_a_tracking_server_that_goes_away_fails_the_run_loudly_and_resume_continues_it(workdir):
    """Stated behaviour: no buffering. Once MLflow's HTTP retries are spent the run fails with the
    connection error; checkpoints stay, and ``--ckpt_path last`` continues the same MLflow run."""
    import os
    import subprocess
    import sys
    import time

    import mlflow
    import torch

    from conftest import free_port

    backend, artifacts, port = f"sqlite:///{workdir}/server.db", str(workdir / "served"), free_port()
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    args = [a for a in task_args("elemnet", *SSUB, "--trainer.max_epochs=500", "--trainer.limit_train_batches=2",
                                 "--trainer.limit_val_batches=1") if "tracking_uri" not in a]

    def last():  # outputs/elemnet/<run name>/checkpoints/last.ckpt
        return next((c / "last.ckpt" for c in run_checkpoints(workdir, "elemnet") if (c / "last.ckpt").exists()), None)
    with mlflow_server(backend, workdir, artifacts, port=port) as url:
        env["MLFLOW_TRACKING_URI"] = url
        proc = subprocess.Popen([sys.executable, "-m", "cli.train", *args], cwd=workdir, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while last() is None and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        time.sleep(1)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
    _, stderr = proc.communicate(timeout=300)  # the server is gone
    assert proc.returncode != 0
    assert "Connection refused" in stderr or "ConnectionError" in stderr or "Max retries" in stderr, stderr[-3000:]
    assert "--ckpt_path last` continues the same run" in stderr
    with mlflow_server(backend, workdir, artifacts, port=port) as url:
        mlflow.set_tracking_uri(url)
        assert mlflow.search_runs(experiment_names=["ssub"]).iloc[0].status == "RUNNING"
        epoch = torch.load(last(), weights_only=True, map_location="cpu")["epoch"]
        resume = [a if a != "--trainer.max_epochs=500" else f"--trainer.max_epochs={epoch + 2}" for a in args]
        result = run_module("cli.train", [*resume, "--ckpt_path", "last"], cwd=workdir,
                            env={**env, "MLFLOW_TRACKING_URI": url})
        assert result.returncode == 0, result.stderr[-3000:]
        runs = mlflow.search_runs(experiment_names=["ssub"])
        assert len(runs) == 1 and runs.iloc[0].status == "FINISHED"


def test_make_ui_is_one_server_and_its_worker_and_stops_quietly_on_ctrl_c(workdir):
    import os
    import signal
    import subprocess
    import sys
    import time

    import mlflow
    import psutil

    from conftest import free_port, wait_for_health

    mlflow.MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db").search_experiments()  # the store exists
    port = free_port()
    # started with SIGINT ignored, as a background job (or a test runner) may pass it on: Ctrl-C still stops it
    proc = subprocess.Popen([sys.executable, "-m", "cli.ui", "--port", str(port)], cwd=workdir, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert wait_for_health(f"http://127.0.0.1:{port}", proc), "make ui did not answer /health"
        time.sleep(3)  # what MLflow starts beside the server has started by now
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) <= 2, [" ".join(c.cmdline()[:4]) for c in children]  # the server, its worker
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # the failure is the hang; leave no server behind
            for process in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
                process.kill()
            raise
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert proc.returncode == 0 and "MLflow stopped" in out
    assert "Traceback" not in out and "CancelledError" not in out, out[-2000:]
