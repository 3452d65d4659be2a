"""The real CLI end to end: every task config, MLflow records, resume, failure, DDP."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from cli.configs import known_tasks
from cli.train import main
from conftest import CONFIGS, SMOKE_DATA, run_checkpoints, run_module, search_runs, task_args


#: one task of each family also runs in `make test-fast` (composition, crystal structures, microstructures,
#: EBSD, XRD); the others only in `make test`
FAMILIES = {"elemnet", "cgcnn", "homogenization", "omnet", "padnet"}


@pytest.mark.parametrize("task", [pytest.param(t, marks=() if t in FAMILIES else pytest.mark.slow) for t in known_tasks()])
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
    assert {"test/mae", "test/acc", "test/descriptor_error"} & set(cli.trainer.callback_metrics)  # regression, classification, GAN


@pytest.mark.slow
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


@pytest.mark.parametrize("task, net", [("homogenization", "HomogenizationFieldCNN"),
                                       ("localization", "LocalizationFieldCNN")])
def test_cpu_microstructure_profiles_train_the_periodic_field_nets(task, net, workdir):
    """The CPU profiles train our fully periodic CNNs, not the papers' nets, on their own morphologies/sizes
    (shrunk here to the smoke data's, which must come after the profile)."""
    cli = main(task_args(task, "--config", str(CONFIGS / "profiles" / "cpu" / f"{task}.yaml"), *SMOKE_DATA[task],
                         "--trainer.fast_dev_run=true"))
    assert type(cli.model.net).__name__ == net and cli.trainer.state.finished
    assert cli.model.hparams.lr_schedule == "onecycle" and "test/mae" in cli.trainer.callback_metrics


@pytest.mark.slow
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
    assert len(history) == 2 and history[-1].step > 0  # one value per epoch, at its step
    # one value per run at step 0, which MLflow's charts show as a bar, not a one-point line
    assert [m.step for m in client.get_metric_history(run.run_id, "test/mae")] == [0]
    assert [m.step for m in client.get_metric_history(run.run_id, "time/training_s")] == [0]
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"config.yaml", "cleaning_report.json", "plots", "model", "extrapolation.md"} <= artifacts
    # the extrapolation flag scored on the test and validation rows (at most 10,000 of each)
    assert run["metrics.extrapolation/test/rows"] == 10_000 and 0 < run["metrics.extrapolation/test/flagged_share"] < 1
    assert run["metrics.extrapolation/all/mae_flagged"] > 0 and run["metrics.extrapolation/all/mae_unflagged"] > 0
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


@pytest.mark.slow
@pytest.mark.parametrize("task, profile, name", [("elemnet", [], "elemnet-seed0-"),
                                                 ("irnet", ["--config", str(CONFIGS / "profiles" / "cpu" / "irnet.yaml")], "irnet-cpu-seed0-")])
def test_killed_run_is_marked_and_resumes_from_last_checkpoint(task, profile, name, workdir):
    """A run killed after an epoch is marked, and `--ckpt_path last` continues the same MLflow run from the task's
    latest run folder (outputs/<task>/<run name>/)."""
    args = task_args(task, *profile, "--trainer.max_epochs=50", "--trainer.limit_train_batches=2",
                     "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false")
    import os
    import subprocess
    import sys

    import mlflow

    proc = subprocess.Popen([sys.executable, "-m", "cli.train", *args], cwd=workdir,
                            env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not any(c.joinpath("last.ckpt").exists() for c in run_checkpoints(workdir, task)) \
            and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    (checkpoints,) = run_checkpoints(workdir, task)
    assert checkpoints.parent.name.startswith(name)  # outputs/<task>/<run name>/checkpoints
    last = checkpoints / "last.ckpt"
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert runs.iloc[0].status in ("KILLED", "FAILED"), stderr[-2000:]

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


@pytest.mark.slow
def test_two_runs_of_a_task_keep_both_models_and_compare_in_mlflow(workdir, capsys):
    """Each run has its own folder and name: a second run leaves the first one's checkpoints byte for byte;
    tags and the training budget tell the runs apart; the end-of-run summary names a checkpoint that exists;
    ``--ckpt_path <run name>`` resumes that run."""
    import re

    constant = "--model.init_args.lr_schedule=constant"  # a one-cycle schedule ends with its run; this one goes on
    main(task_args("elemnet", constant, "--test_after_fit=false"))
    (first,) = run_checkpoints(workdir, "elemnet")
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    capsys.readouterr()
    main(task_args("elemnet", "--trainer.limit_train_batches=2", "--seed_everything=1"))
    summary = capsys.readouterr().out
    folders = run_checkpoints(workdir, "elemnet")
    assert len(folders) == 2 and folders[0] == first and folders[1].parent.name.startswith("elemnet-seed1-")
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert set(runs["tags.mlflow.runName"]) == {f.parent.name for f in folders}
    second = runs[runs["tags.mlflow.runName"] == folders[1].parent.name].iloc[0]
    assert (second["tags.task"], second["tags.profile"], second["tags.seed"], second["tags.net"]) == \
        ("elemnet", "default", "1", "ElemNet")
    assert second["tags.device"].startswith("cpu") and len(second["tags.dataset.sha256"]) == 16
    assert second["tags.git.commit"]
    assert second["params.trainer/limit_train_batches"] == "2" and second["params.trainer/max_epochs"] == "1"
    assert second["params.lr_schedule"] == "onecycle" and second["params.batch_size"] == "512"
    for unused in ("holdout_system", "n_folds", "fold", "mc_samples", "ensemble_size", "init_from"):
        assert f"params.{unused}" not in runs.columns or runs[f"params.{unused}"].isna().all(), unused
    # the summary: the run, its test metrics in the target's unit, a checkpoint to predict with
    assert f"run {second['tags.mlflow.runName']} ({second.run_id})" in summary
    assert re.search(r"test: .*mae \S+ eV/atom", summary), summary
    best = re.search(r"CKPT=(\S+)", summary).group(1)
    assert (workdir / best).is_file() and Path(best).parent == folders[1].relative_to(workdir)
    # the logged model is a version of the task's registered model, the alias @best on the lowest test MAE
    import mlflow

    from callbacks.composition_model import register

    client, name = mlflow.MlflowClient(), "elemnet-oqmd_formation_enthalpy"
    held = client.get_model_version_by_alias(name, "best")
    assert held.run_id == second.run_id
    register(client, second.run_id, float(held.tags["test/mae"]) + 1)  # a worse version: the alias stays
    assert client.get_model_version_by_alias(name, "best").version == held.version
    _, better = register(client, second.run_id, float(held.tags["test/mae"]) / 2)
    assert str(client.get_model_version_by_alias(name, "best").version) == better
    # resume the first run by its name: the same MLflow run goes on, no third run
    main(task_args("elemnet", constant, "--trainer.max_epochs=2", "--ckpt_path", first.parent.name,
                   "--test_after_fit=false"))
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 2 and len(run_checkpoints(workdir, "elemnet")) == 2


@pytest.mark.slow
def test_resuming_a_run_that_does_not_exist_is_a_one_line_error(workdir):
    result = run_module("cli.train", task_args("elemnet", "--ckpt_path", "elemnet-seed0-nosuch"), cwd=workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: --ckpt_path elemnet-seed0-nosuch: no run outputs/elemnet/elemnet-seed0-nosuch" in result.stderr
    assert "Traceback" not in result.stderr and not (workdir / "outputs" / "elemnet").exists()


@pytest.mark.slow
def test_resuming_beyond_the_one_cycle_schedule_stops_before_training_and_names_the_checkpoint(workdir):
    main(task_args("elemnet", "--trainer.limit_val_batches=1", "--test_after_fit=false"))  # 1 epoch of 4 steps
    (checkpoints,) = run_checkpoints(workdir, "elemnet")
    last = checkpoints / "last.ckpt"
    with pytest.raises(ValueError, match=f"cannot resume {last.relative_to(workdir)}: .* schedule of 4 steps, and this run takes 12"):
        main(task_args("elemnet", "--trainer.max_epochs=3", "--trainer.limit_val_batches=1", "--ckpt_path", "last"))
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 1 and runs.iloc[0].status == "FAILED"  # the resumed run, marked; its epoch 0 is kept


@pytest.mark.slow
def test_ctrl_c_marks_the_run_killed_exits_130_and_says_how_to_resume(workdir, capsys):
    """Ctrl-C (the KeyboardInterrupt of SIGINT, raised after epoch 0's checkpoints) ends the command with exit
    status 130 and the MLflow run KILLED (not FAILED); the printed resume command continues the same run."""
    args = ["--trainer.max_epochs=3", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    with pytest.raises(SystemExit) as ended:
        main(task_args("elemnet", *args, "--trainer.callbacks+=crash_callback.InterruptAfterFirstEpoch"))
    assert ended.value.code == 130
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 1 and runs.iloc[0].status == "KILLED"
    err = capsys.readouterr().err
    (checkpoints,) = run_checkpoints(workdir, "elemnet")
    assert f"resume: make train TASK=elemnet ARGS='--ckpt_path {checkpoints.parent.name}'" in err
    cli = main(task_args("elemnet", *args, "--ckpt_path", checkpoints.parent.name, "--test_after_fit=false"))
    assert cli.trainer.current_epoch == 3
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 1 and runs.iloc[0].status == "FINISHED"


@pytest.mark.slow
def test_sigterm_while_labelling_marks_the_run_killed_and_stops_the_solver(workdir):
    """A SIGTERM while the datamodule still labels its elements (before Lightning handles signals), with the
    solver in its worker process: the command ends at once with status 130, the MLflow run is KILLED, and the
    worker stops before it, leaving a readable file for the next run to resume (tests/test_mve.py)."""
    import os
    import re
    import subprocess
    import sys

    import h5py
    import numpy as np

    n = 5_000  # 33³ elements in float32: minutes of solving in the worker, far longer than this test waits
    args = task_args("homogenization", f"--data.init_args.n_elements={n}", "--data.init_args.size=33",
                     "--data.init_args.solver_precision=float32")
    log = workdir / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "cli.train", *args], cwd=workdir, stdout=subprocess.DEVNULL,
                                stderr=stderr, env={**os.environ, "MATDL_DATA_DIR": str(workdir / "data")})
        deadline = time.time() + 180
        while not re.search(rf"\b[1-9]\d*/{n}\b", log.read_text()) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130, log.read_text()[-2000:]
    assert "interrupted: the MLflow run is marked KILLED" in log.read_text()
    runs = search_runs(workdir, "mve_homogenization")
    assert len(runs) == 1 and runs.iloc[0].status == "KILLED"
    (path,) = (workdir / "data" / "mve").glob("homogenization-33c50-*.h5")
    with h5py.File(path, "r") as f:  # the worker left before its caller: nobody writes any more
        done = int(f.attrs["n_done"])
        assert 0 < done < n and np.isfinite(f["c11"][:done]).all()  # checksummed chunks: a torn write fails here
    time.sleep(2)
    with h5py.File(path, "r") as f:
        assert int(f.attrs["n_done"]) == done


@pytest.mark.slow
def test_crash_marks_the_run_failed(workdir):
    with pytest.raises(RuntimeError, match="injected crash"):
        main(task_args("elemnet", "--trainer.callbacks+=crash_callback.CrashAfterFirstEpoch"))
    runs = search_runs(workdir, "oqmd_formation_enthalpy")
    assert len(runs) == 1 and runs.iloc[0].status == "FAILED"


@pytest.mark.slow
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
    runs = search_runs(workdir, experiment)
    runs = runs.set_index(runs["tags.mlflow.runName"].str.split("-").str[0])  # one-<net>-seed0-<time>: "one"
    assert (runs.status == "FINISHED").all() and len(runs) == 2
    # the extrapolation flag is scored by one process only (callbacks/extrapolation.py): not under DDP
    logged = {name: {c for c in runs.columns if c.startswith("metrics.") and pd.notna(runs.loc[name, c])
                     and not c.startswith("metrics.extrapolation/")} for name in ("one", "ddp")}
    assert "metrics.test/mae" in logged["ddp"]
    assert logged["ddp"] == logged["one"], logged["ddp"] ^ logged["one"]
    import mlflow

    artifacts = {name: sorted(a.path for a in mlflow.MlflowClient().list_artifacts(runs.loc[name, "run_id"])
                            if a.path != "extrapolation.md")
                 for name in ("one", "ddp")}
    assert artifacts["ddp"] == artifacts["one"]


def test_unknown_task_lists_the_known_ones():
    import subprocess

    from conftest import REPO

    result = subprocess.run(["make", "-s", "train", "TASK=nosuch"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "unknown TASK 'nosuch'" in result.stdout and "elemnet" in result.stdout and "irnet" in result.stdout


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("profile", sorted(p for p in (CONFIGS / "profiles" / "cpu").glob("*.yaml")
                                           if not p.stem.endswith("_transfer")),  # sources: tests/test_transfer.py
                         ids=lambda p: p.stem)
def test_cpu_profiles_run_in_the_hardware_precision_and_checkpoint_every_epoch(profile, workdir):
    from cli.precision import hardware_precision

    from cli.train import build

    # the smoke data again after the profile, which may size the data (homogenization: 3,000 elements); the
    # homogenization CNN's fit is the microstructure smoke run's (in one whole-suite run its fit here tested no rows)
    run = build if profile.stem == "homogenization" else main
    cli = run(task_args(profile.stem, "--config", str(profile), *SMOKE_DATA.get(profile.stem, []),
                        "--trainer.fast_dev_run=true"))
    assert cli.trainer.precision == hardware_precision("auto")
    checkpoint = next(cb for cb in cli.trainer.checkpoint_callbacks)
    assert checkpoint.save_last and cli.trainer.max_epochs <= 100
