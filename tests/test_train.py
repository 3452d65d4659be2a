"""The real CLI end to end: every task config, MLflow records, resume, failure, DDP."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from cli.train import known_tasks, main
from conftest import CONFIGS, run_module, search_runs, task_args


@pytest.mark.parametrize("task", known_tasks())
def test_every_task_config_runs_fast_dev_run(task, workdir, monkeypatch):
    if task.endswith("_transfer"):  # no source in a new store: the error says how to make one, then we do
        import mlflow.tracking._tracking_service.utils as tracking

        from lightning_modules.pretrained import PretrainedError

        # fast_dev_run drops the MLflow logger: the source is still looked up in the configured store,
        # never in mlflow's process-wide one (which an earlier test or a user's shell may point elsewhere)
        source = task.removesuffix("_transfer")
        with monkeypatch.context() as patched, pytest.raises(PretrainedError, match=f"make train TASK={source}"):
            patched.setattr(tracking, "_tracking_uri", "nosuchscheme://elsewhere")
            main(task_args(task, "--trainer.fast_dev_run=true"))
        main(task_args(source))
    cli = main(task_args(task, "--trainer.fast_dev_run=true"))
    assert cli.trainer.state.finished
    assert {"test/mae", "test/acc"} & set(cli.trainer.callback_metrics)  # regression or classification


def test_paper_profiles_parse(workdir):
    """Composition profiles carry the published hyperparameters, microstructure ones the published dataset sizes."""
    from cli.train import build

    sizes = {"homogenization": (8550, 51, 50), "localization": (2500, 21, 10)}
    for profile in sorted((CONFIGS / "profiles" / "paper").glob("*.yaml")):
        if profile.stem == "omnet":  # build only: 374,852 patterns to simulate, ~200M parameters to train
            cli = build(task_args("omnet", "--config", str(profile), smoke=False))
            assert cli.datamodule.spec.semi_edge_steps == (100, 50) and cli.datamodule.hparams.batch_size == 64
            assert 195e6 < sum(p.numel() for p in cli.model.parameters()) < 205e6
            continue
        if profile.stem.startswith("padnet"):  # build only: 177 frames of 2048^2 to simulate
            cli = build(task_args(profile.stem, "--config", str(profile), smoke=False))
            net, hp = cli.model.net, cli.datamodule.hparams
            assert (hp.frame_size, cli.datamodule.filter_size, net.n_features) == (2048, 200, 2048)
            assert net.graphs[0].peaks.filter_size == 50 and net.graphs[0].peaks.softmax
            assert (cli.model.hparams.lr, cli.model.hparams.weight_decay) == (1e-3, 1e-4)
            continue
        if profile.stem in sizes:  # parse only: instantiating would simulate the paper's dataset
            cli = build(task_args(profile.stem, "--config", str(profile), smoke=False))
            hp = cli.datamodule.hparams
            assert (hp.n_elements, hp.size, hp.contrast) == sizes[profile.stem]
            continue
        if profile.stem.endswith("_transfer"):  # build only: fitting needs an OQMD source in the store
            cli = build(task_args(profile.stem, "--config", str(profile), smoke=False))
            assert (cli.config.trainer.max_epochs, cli.datamodule.hparams.n_folds) == (1000, 10)
            assert (cli.model.hparams.lr, cli.datamodule.hparams.batch_size) == (1e-4, 32)
            continue
        cli = main(task_args(profile.stem, "--config", str(profile), "--trainer.fast_dev_run=true"))
        if profile.stem == "roost":  # our GPU schedule for the set model (no published OQMD-split schedule)
            assert (cli.model.hparams.lr, cli.datamodule.hparams.batch_size) == (3e-4, 128)
            continue
        assert cli.model.hparams.lr == 1e-4
        assert cli.datamodule.hparams.batch_size in (32, 64)


def test_mlflow_run_has_metrics_artifacts_and_a_model_that_predicts(workdir):
    import mlflow

    main(task_args("elemnet", "--trainer.max_epochs=2"))
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run.status == "FINISHED"
    for metric in ("train/mae", "val/mae", "val/mae_best", "test/mae", "test/rmse", "test/r2", "test/ae_p50",
                   "test/ae_p90"):
        assert pd.notna(run[f"metrics.{metric}"]), metric
    assert run["params.net/class_path"] == "lightning_modules.nets.ElemNet"
    assert int(run["params.n_parameters"]) == 4_631_361
    assert int(run["params.data/n_test"]) == 51255
    client = mlflow.MlflowClient()
    history = client.get_metric_history(run.run_id, "val/mae")
    assert len(history) == 2  # one value per epoch
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"config.yaml", "cleaning_report.json", "plots", "model"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.run_id, "plots")} == {
        "plots/parity.png", "plots/error_cdf.png", "plots/val_curve_minutes.png"}
    model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
    preds = model.predict(pd.DataFrame({"formula": ["NaCl", "Fe2O3", "Al2O3"]}))
    assert preds.shape == (3,) and all(-6 < p < 3 for p in preds)
    from importlib.metadata import version

    requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{run.run_id}/model/requirements.txt")).read_text()
    assert f"torch=={version('torch').split('+')[0]}" in requirements and "deep-materials==" in requirements
    # the weights are logged once (the checkpoint artifact), not again inside the pickled pyfunc object
    sizes = {a.path: a.file_size for a in client.list_artifacts(run.run_id, "model")}
    assert sizes["model/python_model.pkl"] < 100_000, sizes


@pytest.mark.parametrize("task, profile, folder", [("elemnet", [], "elemnet"),
                                                   ("irnet", ["--config", str(CONFIGS / "profiles" / "cpu" / "irnet.yaml")], "irnet-cpu")])
def test_killed_run_is_marked_and_resumes_from_last_checkpoint(task, profile, folder, workdir):
    args = task_args(task, *profile, "--trainer.max_epochs=50", "--trainer.limit_train_batches=2",
                     "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false")
    import os
    import subprocess
    import sys

    import mlflow

    proc = subprocess.Popen([sys.executable, "-m", "cli.train", *args], cwd=workdir,
                            env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = workdir / "outputs" / folder / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert runs.iloc[0].status in ("KILLED", "FAILED")

    import torch

    epoch_killed = torch.load(last, weights_only=True, map_location="cpu")["epoch"]
    cli = main(task_args(task, *profile, "--trainer.max_epochs", str(epoch_killed + 2), "--trainer.limit_train_batches=2",
                         "--trainer.limit_val_batches=1", "--ckpt_path", "last", "--test_after_fit=false"))
    assert cli.trainer.current_epoch == epoch_killed + 2
    assert cli.trainer.global_step == (epoch_killed + 2) * 2
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 1 and runs.iloc[0].status == "FINISHED"  # the same MLflow run, continued
    # the validation curve against training minutes goes on where the killed piece stopped
    minutes = mlflow.MlflowClient().get_metric_history(runs.iloc[0].run_id, "time/train_minutes")
    assert len(minutes) >= epoch_killed + 2
    assert all(a.value < b.value for a, b in zip(minutes, minutes[1:]))


def test_resuming_beyond_the_one_cycle_schedule_stops_before_training_and_names_the_checkpoint(workdir):
    main(task_args("elemnet", "--trainer.limit_val_batches=1", "--test_after_fit=false"))  # 1 epoch of 4 steps
    last = workdir / "outputs" / "elemnet" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=f"cannot resume {last}: .* schedule of 4 steps, and this run takes 12"):
        main(task_args("elemnet", "--trainer.max_epochs=3", "--trainer.limit_val_batches=1", "--ckpt_path", "last"))
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 1 and runs.iloc[0].status == "FAILED"  # the resumed run, marked; its epoch 0 is kept


def test_crash_marks_the_run_failed(workdir):
    with pytest.raises(RuntimeError, match="injected crash"):
        main(task_args("elemnet", "--trainer.callbacks+=crash_callback.CrashAfterFirstEpoch"))
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 1 and runs.iloc[0].status == "FAILED"


@pytest.mark.parametrize("task,experiment,extra", [
    ("elemnet", "oqmd_formation_enthalpy", []),
    ("roost", "oqmd_formation_enthalpy", []),  # set-based composition model (padded element sets)
    ("homogenization", "mve_homogenization", ["--data.init_args.train_fraction=1", "--data.init_args.batch_size=2"]),
    ("cgcnn", "flla_2015", ["--data.init_args.batch_size=4"]),  # >= 4 steps per process: both runs schedule the lr
])
def test_ddp_two_cpu_processes(task, experiment, extra, workdir):
    """One test per task family present: composition MLP, 3-D CNN with BatchNorm, crystal graphs (PyG batches).
    Two processes (gloo) log the same metrics, artifacts included, as one process does."""
    one = main(task_args(task, "--trainer.accelerator=cpu", "--trainer.logger.init_args.run_name=one", *extra))
    assert one.trainer.state.finished
    result = run_module("cli.train", task_args(task, "--config", str(CONFIGS / "ddp.yaml"), "--trainer.accelerator=cpu",
                                               "--trainer.logger.init_args.run_name=ddp", *extra), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = search_runs(workdir, experiment).set_index("tags.mlflow.runName")
    assert (runs.status == "FINISHED").all() and len(runs) == 2
    logged = {name: {c for c in runs.columns if c.startswith("metrics.") and pd.notna(runs.loc[name, c])}
              for name in ("one", "ddp")}
    assert "metrics.test/mae" in logged["ddp"]
    assert logged["ddp"] == logged["one"], logged["ddp"] ^ logged["one"]
    import mlflow

    artifacts = {name: sorted(a.path for a in mlflow.MlflowClient().list_artifacts(runs.loc[name, "run_id"]))
                 for name in ("one", "ddp")}
    assert artifacts["ddp"] == artifacts["one"]


def test_unknown_task_lists_the_known_ones():
    import subprocess

    from conftest import REPO

    result = subprocess.run(["make", "-s", "train", "TASK=nosuch"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "unknown TASK 'nosuch'" in result.stdout and "elemnet" in result.stdout and "irnet" in result.stdout


def test_a_run_logs_its_phase_times_and_its_validation_curve_against_minutes(workdir):
    import mlflow

    main(task_args("irnet", "--trainer.max_epochs=3"))
    run = search_runs(workdir, "oqmd_formation_enthalpy").iloc[0]
    for phase in ("startup", "training", "testing", "logging"):
        assert run[f"metrics.time/{phase}_s"] > 0, phase
    client = mlflow.MlflowClient()
    minutes = client.get_metric_history(run.run_id, "time/train_minutes")
    val = client.get_metric_history(run.run_id, "val/mae")
    assert [m.step for m in minutes] == [m.step for m in val] and len(val) == 3  # one point per validation
    assert all(a.value < b.value for a, b in zip(minutes, minutes[1:]))
    assert minutes[-1].value * 60 <= run["metrics.time/training_s"]
    assert "plots/val_curve_minutes.png" in {a.path for a in client.list_artifacts(run.run_id, "plots")}


@pytest.mark.parametrize("profile", sorted((CONFIGS / "profiles" / "cpu").glob("*.yaml")), ids=lambda p: p.stem)
def test_cpu_profiles_run_in_the_hardware_precision_and_checkpoint_every_epoch(profile, workdir):
    from cli.precision import hardware_precision

    cli = main(task_args(profile.stem, "--config", str(profile), "--trainer.fast_dev_run=true"))
    assert cli.trainer.precision == hardware_precision("auto")
    checkpoint = next(cb for cb in cli.trainer.checkpoint_callbacks)
    assert checkpoint.save_last and cli.trainer.max_epochs <= 100
