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


@pytest.mark.slow
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
    assert run["metrics.shift/other/mae_off"] > 0 and run["metrics.shift/other/mae_mean"] > 0  # ElemNet has dropout
    assert 0 < run["metrics.shift/scratch/slope_mean"] < 2
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "plots")}
    assert {"plots/pca_elements_scratch.png", "plots/pca_ab_other.png", "plots/metal_auc.png"} <= artifacts
    tables = mlflow.artifacts.load_text(f"runs:/{run.run_id}/analysis.md")
    assert "ROC AUC" in tables and "slope dropout off" in tables


def test_dropout_shift_is_none_for_linear_dropout_and_shows_relu_shrinkage():
    from types import SimpleNamespace

    import torch
    from torch import nn

    from cli.analyze import dropout_shift

    torch.manual_seed(0)
    x = torch.randn(2000, 8)
    y = x.sum(1)
    assert dropout_shift(SimpleNamespace(net=nn.Linear(8, 1)), x, y) == {}  # no dropout: nothing to compare
    linear = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 1))  # mean of inverted dropout = dropout off, exactly in expectation
    with torch.no_grad():
        linear[1].weight.fill_(1.0), linear[1].bias.zero_()
    shift = dropout_shift(SimpleNamespace(net=linear), x, y, samples=400)
    assert shift["slope_off"] == pytest.approx(1.0) and shift["slope_mean"] == pytest.approx(1.0, abs=0.05)
    # a ReLU after dropout: dropout-on passes raise its mean, the dropout-off net lies below their mean
    relu = nn.Sequential(nn.Linear(8, 64), nn.Dropout(0.5), nn.ReLU(), nn.Linear(64, 1))
    with torch.no_grad():
        relu[3].weight.fill_(1.0), relu[3].bias.zero_()
    off = relu.eval()(x).detach().reshape(-1)  # targets = the dropout-off net itself
    shift = dropout_shift(SimpleNamespace(net=relu), x, off, samples=200)
    assert shift["mae_off"] == pytest.approx(0.0, abs=1e-5) and shift["mae_mean"] > 0.1
