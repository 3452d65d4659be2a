"""make search: an Optuna study over the real training CLI, recorded in MLflow, resumable."""

import optuna
import pandas as pd
import pytest
import yaml

from cli import search_spaces
from cli.search import Search, main_cli, storage_for
from cli.train import main as train
from conftest import search_runs, task_args

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow


def _args(workdir, *extra):
    import os

    return ("--data.init_args.dataset=ssub --data.init_args.split=random --data.init_args.skip_bad_rows=true "
            "--data.init_args.train_fraction=1.0 --trainer.max_epochs=2 --trainer.limit_train_batches=6 "
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
    monkeypatch.setitem(search_spaces.SPACES, "ElemNet", lambda trial: {"model.init_args.no_such_option": 1})
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    with pytest.raises(SystemExit):
        Search("elemnet", _args(workdir).split(), "elemnet", storage)
    assert not _study_exists(workdir)  # refused before the study was even created


def test_ddp_trials_report_each_epoch_and_a_pruned_ddp_trial_ends_pruned(workdir):
    """Trials trained by 2 processes (gloo, ddp_spawn): rank 0 reports to the RDB study, and
    ``check_pruned()`` after fitting turns the pruner's decision into a pruned trial."""
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    args = _args(workdir, "--trainer.accelerator=cpu", "--trainer.limit_train_batches=3",
                 "--trainer.limit_val_batches=2").split()
    Search("elemnet", args, "ddp", storage, devices=2).run(1)
    # a real pruner that prunes any trial whose val/mae is above 1e-6, i.e. every trial, at its first epoch
    Search("elemnet", args, "ddp", storage, devices=2, pruner=optuna.pruners.ThresholdPruner(upper=1e-6)).run(1)
    first, second = _study(workdir, "ddp").trials
    assert (first.state.name, second.state.name) == ("COMPLETE", "PRUNED")
    assert sorted(first.intermediate_values) == [0, 1]
    assert first.value == pytest.approx(min(first.intermediate_values.values()))
    assert list(second.intermediate_values) == [0]
    runs = search_runs(workdir, "ssub").set_index("tags.optuna.trial")
    assert runs.loc["0", "status"] == "FINISHED" and runs.loc["1", "status"] == "KILLED"
    assert pd.isna(runs.loc["1"].get("metrics.test/mae")), "a pruned trial is not tested"


def test_a_worker_killed_mid_trial_leaves_a_failed_trial_that_is_retried(workdir):
    import os
    import signal
    import subprocess
    import sys
    import time

    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    storage_for(storage)  # the schema exists before the worker starts (make search's parent makes it too)
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.search", "--task", "elemnet", "--trials", "1", "--storage", storage,
         "--heartbeat", "1", "--args", _args(workdir, "--trainer.max_epochs=500")],
        cwd=workdir, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while True:  # wait until the worker is inside its trial
            trials = _study(workdir).trials if _study_exists(workdir) else []
            if trials and trials[0].state.name == "RUNNING" and "mlflow_run_id" in trials[0].user_attrs:
                break
            assert worker.poll() is None and time.time() < deadline, "the worker never started its trial"
            time.sleep(0.5)
        time.sleep(2)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    time.sleep(3.5)  # > 3 heartbeats of silence
    main_cli(["--task", "elemnet", "--trials", "2", "--storage", storage, "--heartbeat", "1",
              "--args", _args(workdir)])
    trials = _study(workdir).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].system_attrs.get("failed_trial") == 0 and trials[1].params == trials[0].params
    runs = search_runs(workdir, "ssub").set_index("tags.optuna.trial")
    assert runs.loc["0", "status"] == "FAILED" and runs.loc["0", "tags.optuna.state"] == "FAIL (worker lost)"
    assert (runs.loc[["1", "2"], "status"] == "FINISHED").all()


def _study_exists(workdir) -> bool:
    return bool(optuna.get_all_study_names(f"sqlite:///{workdir}/mlruns/optuna.db")) \
        if (workdir / "mlruns" / "optuna.db").exists() else False


def test_trials_over_the_parameter_budget_are_pruned_before_they_train(workdir):
    from cli.search import base_args, n_parameters

    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    search = Search("elemnet", _args(workdir).split(), "budget", storage, max_params=100_000)
    search.run(2)
    trials = _study(workdir, "budget").trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert all(t.user_attrs["n_parameters"] > 100_000 and not t.intermediate_values for t in trials)
    runs = search_runs(workdir, "ssub")
    trial_runs = runs[runs["tags.optuna.trial"].notna()]
    assert (trial_runs["tags.optuna.state"] == "PRUNED (over the parameter budget)").all()
    assert not [c for c in trial_runs.columns if c.startswith("metrics.")], "no trial trained"
    # "task": the budget is the task's own net (ElemNet, Table 3.1)
    assert Search("elemnet", _args(workdir).split(), "budget", storage, max_params="task").max_params == \
        n_parameters(base_args("elemnet", _args(workdir).split())) == 4_631_361


def test_reproduce_search_trains_the_task_net_beside_the_best_trial_and_resumes(workdir):
    from cli.reproduce import main as reproduce

    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    opts = ["search", "--task", "elemnet", "--storage", storage, "--seeds", "0", "1", "--output", str(workdir / "s.md")]
    train_args = _args(workdir, "--trainer.max_epochs=1").split()
    with pytest.raises(SystemExit, match="make search TASK=elemnet"):
        reproduce(opts + ["--", *train_args])  # no study yet: says how to make one
    main_cli(["--task", "elemnet", "--trials", "2", "--storage", storage, "--args", _args(workdir)])
    text = reproduce(opts + ["--", *train_args])
    study = _study(workdir)
    assert f"| search: trial {study.best_trial.number} |" in text and "| elemnet as published" in text
    assert "Verdict: the searched net" in text and "2 trials" in text and (workdir / "s.md").read_text() == text
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()]
    assert sorted(cells["tags.reproduce.cell"]) == ["paper-seed0", "paper-seed1", "searched-seed0", "searched-seed1"]
    assert (cells.status == "FINISHED").all() and cells["metrics.test/mae"].notna().all()
    sizes = cells.set_index("tags.reproduce.cell")["metrics.n_parameters"]
    assert sizes["paper-seed0"] == sizes["paper-seed1"] != sizes["searched-seed0"]
    started = cells["start_time"].max()
    reproduce(opts + ["--", *train_args])  # resumed: every cell read back, none retrained
    runs = search_runs(workdir, "reproduce")
    assert runs[runs["tags.reproduce.cell"].notna()]["start_time"].max() == started


@pytest.mark.parametrize("task", ["elemnet", "irnet", "roost", "cgcnn", "homogenization", "localization"])
def test_every_search_space_draws_options_its_task_builds(task, workdir):
    from cli.search import base_args
    from cli.train import build

    space = search_spaces.space_for(task)
    for seed in range(3):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        overrides = space(trial)
        cli = build(task_args(task)[:4] + base_args(task, [])[4:] + search_spaces.as_args(overrides))
        assert cli.datamodule.hparams.batch_size == overrides[search_spaces.BATCH]


@pytest.mark.parametrize("task, size", [("elemnet", 4_631_361), ("irnet", 5_552_513)])
def test_the_reference_trial_draws_exactly_the_task_net(task, size, workdir):
    from cli.search import base_args, n_parameters
    from cli.train import build

    base = base_args(task, [])
    params = search_spaces.reference_params(task, build(base).config)
    overrides = search_spaces.space_for(task)(optuna.trial.FixedTrial(params))
    assert n_parameters(base + search_spaces.as_args(overrides)) == n_parameters(base) == size
    assert overrides[search_spaces.LR] == 0.001 and overrides[search_spaces.BATCH] == 512
    with pytest.raises(SystemExit, match="no reference point for Roost"):
        search_spaces.reference_params("roost", build(base_args("roost", [])).config)


def test_make_search_reference_puts_the_task_net_in_the_study_once(workdir):
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    main_cli(["--task", "elemnet", "--trials", "2", "--reference", "--storage", storage, "--args", _args(workdir)])
    main_cli(["--task", "elemnet", "--trials", "3", "--reference", "--storage", storage, "--args", _args(workdir)])
    study = _study(workdir)
    references = [t for t in study.trials if "reference" in t.user_attrs]
    assert len(study.trials) == 3 and [t.number for t in references] == [0]  # enqueued once, run first
    drawn = references[0].user_attrs["overrides"]
    assert drawn[f"{search_spaces.NET}.stacks"] == [[1024, 4, 0.2], [512, 3, 0.1], [256, 3, 0.3], [128, 3, 0.2],
                                                    [64, 2, 0.0], [32, 1, 0.0]]  # Table 3.1
    assert drawn[search_spaces.LR] == 0.001 and references[0].state.name in ("COMPLETE", "PRUNED")
    from cli.reproduce.search_pays import reference_line

    line = reference_line(study)
    assert (line[0].startswith("The task's own net ran in the study as trial 0") if references[0].state.name == "COMPLETE"
            else line == [])
    assert study.user_attrs["trial_args"] == [" ".join(__import__("shlex").quote(a) for a in _args(workdir).split())]


def test_search_logs_its_plots_and_the_dashboard_serves_the_study(workdir):
    """The parent run holds Optuna's history, parallel-coordinate and importance plots; `make search-dashboard`
    serves the same study over HTTP on loopback (a real optuna-dashboard process)."""
    import json
    import os
    import signal
    import subprocess
    import time
    import urllib.request
    from pathlib import Path

    import mlflow

    from conftest import free_port

    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    main_cli(["--task", "elemnet", "--trials", "3", "--storage", storage, "--args", _args(workdir)])
    parent = search_runs(workdir, "ssub").query("`tags.mlflow.runName` == 'search-elemnet'").run_id.iloc[0]
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(parent, "plots")}
    assert "plots/optimization_history.png" in plots
    if len({str(t.params) for t in _study(workdir).trials if t.state.name == "COMPLETE"}) > 1:
        assert {"plots/parallel_coordinate.png", "plots/param_importances.png"} <= plots

    repo, port = Path(__file__).resolve().parents[1], free_port()
    missing = subprocess.run(["make", "-s", "-C", str(repo), "search-dashboard", f"STORAGE=sqlite:///{workdir}/none.db"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no study to show" in missing.stdout
    server = subprocess.Popen(["make", "-s", "-C", str(repo), "search-dashboard", f"STORAGE={storage}",
                               f"DASHBOARD_PORT={port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        deadline, studies = time.time() + 90, None
        while time.time() < deadline and studies is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as reply:
                    studies = json.load(reply)["study_summaries"]
            except OSError:
                time.sleep(1)
        assert studies is not None, "optuna-dashboard did not answer"
        assert [s["study_name"] for s in studies] == ["elemnet"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
