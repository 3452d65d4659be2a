"""A real PostgreSQL as the backend of an MLflow tracking server and of a 2-worker Optuna study."""

import mlflow
import optuna

import pytest

from cli.search import main_cli
from cli.train import main as train
from conftest import mlflow_server, task_args

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow


def test_training_logs_to_a_tracking_server_on_postgresql(postgres, workdir, monkeypatch):
    url, createdb = postgres
    createdb("mlflow")
    with mlflow_server(f"{url}mlflow", workdir, str(workdir / "server-artifacts")) as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
        train(task_args("elemnet", "--data.init_args.dataset=ssub", "--data.init_args.split=random",
                        "--data.init_args.skip_bad_rows=true"))
        mlflow.set_tracking_uri(server)
        runs = mlflow.search_runs(experiment_names=["ssub"])
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    assert runs.iloc[0]["metrics.test/mae"] > 0


def test_two_workers_share_a_study_on_postgresql(postgres, workdir):
    url, createdb = postgres
    createdb("optuna")
    storage = f"{url}optuna"
    args = ("--data.init_args.dataset=ssub --data.init_args.split=random --data.init_args.skip_bad_rows=true "
            "--data.init_args.train_fraction=1.0 --trainer.max_epochs=2 "
            f"--trainer.logger.init_args.tracking_uri=sqlite:///{workdir}/mlruns/mlflow.db")
    main_cli(["--task", "elemnet", "--trials", "4", "--workers", "2", "--storage", storage, "--args", args])
    trials = optuna.load_study(study_name="elemnet", storage=storage).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
