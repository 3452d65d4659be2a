"""``make reproduce TABLE=crabnet``: every composition net over seeds, one table, published numbers beside."""

from __future__ import annotations

import os

import pytest

from conftest import search_runs

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow


def test_crabnet_table_trains_each_net_per_seed_says_when_the_split_is_not_crabnets_and_resumes(workdir):
    from cli.reproduce import main as reproduce

    train = ["--data.init_args.dataset=ssub", "--data.init_args.split=random", "--data.init_args.skip_bad_rows=true",
             "--trainer.max_epochs=1", "--trainer.limit_train_batches=4", "--trainer.enable_progress_bar=false",
             f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    opts = ["crabnet", "--tasks", "elemnet", "roost", "--seeds", "0", "1", "--output", str(workdir / "c.md")]
    text = reproduce(opts + ["--", *train])
    assert "NOT the CrabNet split" in text  # SSUB here: the published column is not comparable, and it says so
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "0.0489" in rows["elemnet"] and "0.0315" in rows["roost"] and "0.0311" in rows["CrabNet"]
    assert "4,631,361" in rows["elemnet"] and " ± " in rows["roost"]
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()]
    assert sorted(cells["tags.reproduce.cell"]) == ["elemnet-seed0", "elemnet-seed1", "roost-seed0", "roost-seed1"]
    assert (cells.status == "FINISHED").all() and (cells["metrics.train_seconds"] > 0).all()
    seeds = cells.set_index("tags.reproduce.cell")["metrics.test/mae"]
    assert seeds["roost-seed0"] != seeds["roost-seed1"]  # the seed reaches the run
    started = cells["start_time"].max()
    assert reproduce(opts + ["--", *train]).split("hardware:")[0] == text.split("hardware:")[0]  # read back
    runs = search_runs(workdir, "reproduce")
    assert runs[runs["tags.reproduce.cell"].notna()]["start_time"].max() == started


def test_elemnet_table_puts_elemnet_beside_both_random_forests_with_one_core_prediction_times(workdir):
    from cli.reproduce import main as reproduce

    train = ["--data.init_args.dataset=ssub", "--data.init_args.split=random", "--data.init_args.skip_bad_rows=true",
             "--trainer.max_epochs=1", "--trainer.limit_train_batches=4", "--trainer.enable_progress_bar=false",
             "--rf.n_estimators=8", f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    opts = ["elemnet", "--seeds", "0", "1", "--output", str(workdir / "e.md")]
    text = reproduce(opts + ["--", *train])
    assert "NOT the paper's data" in text and "0.071 ± 0.0006" in text and "9.28 s (CPU)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "±" in line.split(" | ")[2]]
    assert [r.split(" | ")[1] for r in rows] == ["physical attributes (Magpie 145)", "element fractions", "element fractions"]
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()].set_index("tags.reproduce.cell")
    assert len(cells) == 6 and (cells.status == "FINISHED").all()
    n_test = int(cells.loc["elemnet-seed0", "params.data/n_test"])  # the forests predict the same test set
    assert (cells["metrics.test/n_predicted"] == n_test).all() and (cells["metrics.test/predict_seconds_cpu1"] > 0).all()
    assert cells.loc["rf_magpie-seed0", "metrics.test/mae"] != cells.loc["rf_magpie-seed1", "metrics.test/mae"]
    assert cells.loc["rf_magpie-seed0", "params.features"] == "magpie"
    assert reproduce(opts + ["--", *train]).split("hardware:")[0] == text.split("hardware:")[0]  # read back


def test_irnet_table_trains_rf_plain_and_both_irnets_per_oqmd_property_and_refuses_other_data(workdir):
    import pytest

    from cli.reproduce import main as reproduce

    train = ["--data.init_args.train_fraction=0.005", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
             "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=2", "--trainer.enable_progress_bar=false",
             "--rf.n_estimators=4",
             f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    with pytest.raises(SystemExit, match="not OQMD properties"):
        reproduce(["irnet", "--datasets", "ssub", "--", *train])
    text = reproduce(["irnet", "--datasets", "oqmd_formation_enthalpy", "--seeds", "0", "--output",
                      str(workdir / "i.md"), "--", *train])
    row = next(line for line in text.splitlines() if line.startswith("| oqmd_formation_enthalpy"))
    assert [cell.split(" (")[1] for cell in row.strip("| ").split(" | ")[1:]] == ["0.077)", "0.072)", "0.054)", "0.048)"]
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()].set_index("tags.reproduce.cell")
    assert len(cells) == 4 and (cells.status == "FINISHED").all()
    net = {m: cells.loc[f"oqmd_formation_enthalpy-{m}-seed0"] for m in ("plain-17", "IRNet-17", "IRNet-48")}
    assert net["plain-17"]["params.net/init_args/shortcut"] == "none"
    assert net["plain-17"]["metrics.n_parameters"] < net["IRNet-17"]["metrics.n_parameters"] \
        < net["IRNet-48"]["metrics.n_parameters"]  # the shortcuts' projections, then depth


def test_an_interrupted_cell_resumes_from_its_last_checkpoint_and_another_runs_are_moved_aside(workdir):
    import mlflow

    from cli.configs import task_configs
    from cli.reproduce.cells import Cells, resume_from
    from cli.train import main as train

    uri = os.environ["MLFLOW_TRACKING_URI"]
    args = task_configs("elemnet") + [
        "--data.init_args.dataset=ssub", "--data.init_args.split=random", "--data.init_args.skip_bad_rows=true",
        "--trainer.limit_train_batches=2", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.tracking_uri={uri}"]
    cells, root = Cells("resume", ["x"], uri), workdir / "outputs" / "reproduce" / "resume"
    run_id, _ = cells.cell("a")
    args.append("--trainer.max_epochs=2")
    # the cell crashed in its second epoch: its run is FAILED, the first epoch's last.ckpt is there
    with pytest.raises(RuntimeError, match="injected crash in epoch 1"):
        train(args + ["--trainer.callbacks+=crash_callback.CrashInSecondEpoch",
                      f"--trainer.logger.init_args.run_id={run_id}", f"--trainer.default_root_dir={root / 'a'}"])
    assert cells.client.get_run(run_id).info.status == "FAILED" and cells.cell("a") == (run_id, None)
    assert resume_from(run_id, root / "a") == "last"
    metrics = cells.train("a", args, root)
    history = cells.client.get_metric_history(run_id, "val/mae")
    assert [m.step for m in history] == sorted({m.step for m in history}) and len(history) == 2  # epoch 0 not redone
    assert metrics["test/mae"] > 0 and cells.client.get_run(run_id).info.status == "FINISHED"
    # another run's checkpoints in a cell's folder are kept aside, never resumed, never mixed with its best
    best = sorted(p.name for p in (root / "a" / "checkpoints").iterdir())
    other, _ = cells.cell("b")
    assert resume_from(other, root / "a") is None
    assert not (root / "a" / "checkpoints").exists()
    assert sorted(p.name for p in (root / "a" / f"checkpoints-{run_id}").iterdir()) == best
    assert mlflow.MlflowClient(uri).get_run(other).info.status == "RUNNING"
    # a cell whose scoring after training fails is FAILED, not left RUNNING, and is not read back as done
    def broken(cli):
        raise ValueError("scoring failed")

    with pytest.raises(ValueError, match="scoring failed"):
        cells.train("c", args, root, after=broken)
    run_c, done = cells.cell("c")
    assert done is None and cells.client.get_run(run_c).info.status == "FAILED"


def test_precision_table_trains_each_seed_in_float32_and_bf16_and_plots_their_curves(workdir):
    from cli.reproduce import main as reproduce

    train = ["--data.init_args.dataset=ssub", "--data.init_args.split=random", "--data.init_args.skip_bad_rows=true",
             "--trainer.max_epochs=2", "--trainer.limit_train_batches=4", "--trainer.enable_progress_bar=false",
             f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    text = reproduce(["precision", "--task", "elemnet", "--seeds", "0", "1", "--output", str(workdir / "p.md"), "--", *train])
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert " ± " in rows["32-true"] and " ± " in rows["bf16-mixed"]
    assert "paired by seed" in text and (workdir / "outputs" / "reproduce" / "precision-elemnet.png").stat().st_size > 0
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()].set_index("tags.reproduce.cell")
    assert sorted(cells.index) == ["elemnet-32-true-seed0", "elemnet-32-true-seed1",
                                   "elemnet-bf16-mixed-seed0", "elemnet-bf16-mixed-seed1"]
    assert list(cells.loc[["elemnet-32-true-seed0", "elemnet-bf16-mixed-seed0"], "params.precision"]) == ["32-true", "bf16-mixed"]
