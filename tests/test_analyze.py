"""``make analyze``: activations of every hidden layer, PCA plots, metal AUC per layer, one MLflow run."""

from __future__ import annotations

import mlflow
import pytest

from cli.analyze import ab_compounds, main as analyze, metal_labels
from cli.train import main as train
from conftest import task_args

SSUB = ["--data.init_args.dataset=ssub", "--data.init_args.skip_bad_rows=true", "--data.init_args.split=random",
        "--data.init_args.train_fraction=1.0"]


def test_ab_compounds_are_charge_balanced_group_i_ii_sulfides_and_chlorides():
    formulas, groups, anions = ab_compounds()
    assert len(formulas) == 20 and {"Li2S", "LiCl", "MgS", "MgCl2", "Cs2S", "BaCl2"} <= set(formulas)
    assert groups.count("group I") == groups.count("group II") == 10 and anions.count("S") == 10


def test_metal_labels_are_one_per_composition_and_both_classes():
    formulas, labels = metal_labels(500)
    assert len(formulas) == len(set(formulas)) == 500 and set(labels) == {0, 1}


def test_analyze_two_checkpoints_logs_pca_plots_and_an_auc_curve_each(workdir):
    ckpts = []
    for seed in (0, 1):
        cli = train(task_args("elemnet", *SSUB, f"--seed_everything={seed}",
                              f"--trainer.default_root_dir=outputs/m{seed}"))
        ckpts.append(cli.trainer.checkpoint_callback.best_model_path)
    curves = analyze(["--model", f"scratch={ckpts[0]},other={ckpts[1]}", "--layers", "1,16", "--samples", "400",
                      "--folds", "3"])
    assert set(curves) == {"scratch", "other"} and all(len(c) == 17 for c in curves.values())  # input + 16 ReLUs
    # the input fractions alone separate metals from non-metals well: labels and formulas line up
    assert curves["scratch"][0] == pytest.approx(curves["other"][0]) and curves["scratch"][0] > 0.75
    run = mlflow.search_runs(experiment_names=["analysis"]).iloc[0]
    assert run.status == "FINISHED" and run["metrics.auc/other/layer16"] == pytest.approx(curves["other"][16])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "plots")}
    assert {"plots/pca_elements_scratch.png", "plots/pca_ab_other.png", "plots/metal_auc.png"} <= artifacts
