"""make ui / make server: a real MLflow tracking server on loopback."""

import json
import urllib.request

from cli.baseline import main as baseline
from conftest import mlflow_server, run_module, search_runs, task_args

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
        model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
        assert model.predict(pd.DataFrame({"formula": ["NaCl"]})).shape == (1,)
    assert not (workdir / "mlruns" / "mlflow.db").exists()  # nothing went to the local store
    assert any((workdir / "served").rglob("parity.png"))
