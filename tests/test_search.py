"""make search: an Optuna study over the real training CLI, recorded in MLflow, resumable."""

import optuna
import pytest
import yaml

from cli import search_spaces
from cli.search import Search, main_cli
from cli.train import main as train
from conftest import search_runs, task_args


def _args(workdir, *extra):
    import os

    return ("--data.init_args.dataset=ssub --data.init_args.split=random --data.init_args.skip_bad_rows=true "
            "--data.init_args.train_fraction=1.0 --trainer.max_epochs=2 "
            f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']} " + " ".join(extra))


def _study(workdir, name="elemnet"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/mlruns/optuna.db")


def test_study_records_trials_resumes_and_exports_a_config_that_trains(workdir):
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    best = main_cli(["--task", "elemnet", "--trials", "3", "--storage", storage, "--args", _args(workdir)])
    study = _study(workdir)
    assert len(study.trials) == 3
    runs = search_runs(workdir, "ssub")
    parent = runs[runs["tags.mlflow.runName"] == "search-elemnet"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id.iloc[0]]
    assert len(parent) == 1 and len(children) == 3
    assert sorted(children["tags.optuna.trial"].astype(int)) == [0, 1, 2]
    state_of = {t.number: t.state for t in study.trials}
    for _, child in children.iterrows():
        expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[state_of[int(child["tags.optuna.trial"])].name]
        assert child.status == expected
    assert parent["metrics.best/val/mae_best"].iloc[0] == pytest.approx(study.best_value)

    config = yaml.safe_load(best.read_text())
    assert "stacks" in config["model"]["init_args"]["net"]["init_args"]
    cli = train(task_args("elemnet", "--config", str(best), "--trainer.fast_dev_run=true"))
    assert [list(s) for s in cli.model.hparams.net["init_args"]["stacks"]] == \
        config["model"]["init_args"]["net"]["init_args"]["stacks"]

    main_cli(["--task", "elemnet", "--trials", "5", "--storage", storage, "--args", _args(workdir)])
    assert len(_study(workdir).trials) == 5  # resumed: two more in the same study
    runs = search_runs(workdir, "ssub")
    parent = runs[runs["tags.mlflow.runName"] == "search-elemnet"]
    assert len(parent) == 1
    study = _study(workdir)
    assert parent["tags.best_trial"].iloc[0] == str(study.best_trial.number)
    assert parent["metrics.best/val/mae_best"].iloc[0] == pytest.approx(study.best_value)


def test_two_workers_share_one_study_without_duplicates(workdir):
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    main_cli(["--task", "elemnet", "--trials", "4", "--workers", "2", "--storage", storage, "--args", _args(workdir)])
    trials = _study(workdir).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    runs = search_runs(workdir, "ssub")
    assert sorted(runs["tags.optuna.trial"].dropna().astype(int)) == [0, 1, 2, 3]


def test_failing_trials_are_recorded_and_the_study_goes_on(workdir):
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    best = main_cli(["--task", "elemnet", "--trials", "2", "--storage", storage,
                     "--args", _args(workdir, "--model.init_args.weight_decay=-1")])
    assert best is None
    assert [t.state.name for t in _study(workdir).trials] == ["FAIL", "FAIL"]
    runs = search_runs(workdir, "ssub")
    assert (runs[runs["tags.optuna.trial"].notna()].status == "FAILED").all()


def test_a_space_naming_an_unknown_option_fails_before_any_trial(workdir, monkeypatch):
    monkeypatch.setitem(search_spaces.SPACES, "elemnet", lambda trial: {"model.init_args.no_such_option": 1})
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    with pytest.raises(SystemExit):
        Search("elemnet", _args(workdir).split(), "elemnet", storage)
    assert len(_study(workdir).trials) == 0
