"""A local MLflow store keeps its runs' artifacts beside it, whatever folder a run starts from."""

import mlflow

from callbacks.mlflow_run import RunLogger, experiment_id


def test_a_new_experiment_keeps_its_artifacts_beside_the_store_whatever_the_folder(tmp_path, monkeypatch):
    store = tmp_path / "project" / "mlruns"
    store.mkdir(parents=True)
    uri = f"sqlite:///{store}/mlflow.db"
    elsewhere = tmp_path / "worktree"  # e.g. a git worktree that is deleted after its run
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    client = mlflow.MlflowClient(uri)
    eid = experiment_id(client, "reproduce")
    assert client.get_experiment(eid).artifact_location == str(store / "artifacts" / "reproduce")
    assert experiment_id(client, "reproduce") == eid  # found, not created again
    logger = RunLogger(experiment_name="my data/x.csv", tracking_uri=uri)
    logger.experiment.log_text(logger.run_id, "a model", "note.txt")
    assert client.get_experiment(logger.experiment_id).artifact_location == str(store / "artifacts" / "my_data_x.csv")
    assert list((store / "artifacts" / "my_data_x.csv").rglob("note.txt"))
    assert not (elsewhere / "mlruns").exists()
