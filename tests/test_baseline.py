"""make baseline: a Random Forest on the task's split and inputs, logged beside the nets."""

from cli.baseline import main as baseline
from conftest import search_runs, task_args


def test_random_forest_on_ssub_is_logged_with_the_same_metric_names(workdir):
    metrics = baseline(task_args("elemnet", "--data.init_args.dataset=ssub", "--data.init_args.split=random", "--data.init_args.skip_bad_rows=true",
                                 "--data.init_args.train_fraction=1.0", "--rf.n_estimators=20", smoke=True))
    assert 0 < metrics["test/mae"] < 1.0  # SSUB enthalpies span several eV/atom
    run = search_runs(workdir, "ssub").iloc[0]
    assert run.status == "FINISHED" and run["tags.net"] == "RandomForestRegressor"
    assert run["tags.mlflow.runName"].startswith("elemnet-random-forest-seed0-")
    diff = abs(run["metrics.test/mae"] - metrics["test/mae"])
    assert diff < 1e-9
    assert run["params.dataset"] == "ssub"
