"""MC dropout and deep ensembles: scores that a calibrated model passes, runs that log them, predictions with std."""

from __future__ import annotations

import math

import mlflow
import pandas as pd
import pytest
import torch

from cli.predict import main as predict
from cli.train import main as train
from conftest import search_runs, task_args
from lightning_modules.nets import IRNet, Roost
from lightning_modules.uncertainty import calibration_curve, ensemble_members, gaussian_scores

SSUB = ["--data.init_args.dataset=ssub", "--data.init_args.skip_bad_rows=true", "--data.init_args.split=random",
        "--data.init_args.train_fraction=1.0", "--trainer.max_epochs=2"]


def test_scores_of_a_calibrated_and_an_overconfident_gaussian():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(200_000, generator=g)
    mean, std = torch.zeros_like(true), torch.ones_like(true)
    scores = gaussian_scores(mean, std, true)
    assert scores["coverage_68"].item() == pytest.approx(0.68, abs=0.005)
    assert scores["coverage_95"].item() == pytest.approx(0.95, abs=0.003)
    assert scores["nll"].item() == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=0.01)  # entropy of N(0,1)
    expected, observed = calibration_curve(mean, std, true)
    assert torch.allclose(expected, observed, atol=0.01)
    tight = gaussian_scores(mean, 0.5 * std, true)  # overconfident: intervals too narrow, worse likelihood
    assert tight["coverage_95"] < 0.70 and tight["nll"] > scores["nll"]


def test_validation_scores_the_mc_dropout_mean_like_the_test_not_the_dropout_off_net():
    from lightning_modules.nets import ElemNet
    from lightning_modules.regression import PropertyRegressor

    torch.manual_seed(0)
    module = PropertyRegressor(ElemNet(n_features=4, stacks=[(32, 3, 0.5), (16, 3, 0.0)]), uncertainty="mc_dropout",
                               mc_samples=16).eval()
    x, y = torch.rand(256, 4), torch.randn(256, 1)
    torch.manual_seed(1)
    mean, _ = module.predict_with_std(x)
    with torch.no_grad():
        off = module.net(x)
    assert not torch.allclose(mean, off, atol=1e-5)  # a ReLU stack after dropout: the two differ
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="self.log"):  # no trainer attached: the metric is still updated
        module._step((x, y), module.val_metrics, "val")
    val_mae = module.val_metrics.compute()["val/mae"].item()
    assert val_mae == pytest.approx((mean - y).abs().mean().item(), rel=1e-6)
    assert val_mae != pytest.approx((off - y).abs().mean().item(), rel=1e-6)


def test_ensemble_members_are_new_draws_that_keep_embedding_tables():
    net = Roost(element_embedding="mat2vec", width=16, n_layers=1, heads=1, hidden=32, pool_heads=1, head=(32,))
    members = ensemble_members(net, 3, seed=0)
    assert members[0] is net and len(members) == 3
    weights = [dict(m.named_parameters()) for m in members]
    linear = next(k for k, v in weights[0].items() if v.dim() == 2 and not k.startswith("embedding"))
    assert not torch.equal(weights[0][linear], weights[1][linear])
    assert not torch.equal(weights[1][linear], weights[2][linear])
    assert torch.equal(weights[0]["embedding.weight"], weights[2]["embedding.weight"])  # mat2vec kept
    with pytest.raises(ValueError, match="at least 2 members"):
        ensemble_members(net, 1)


def test_a_transferred_ensemble_does_not_stay_one_net(tmp_path):
    """Members loaded from one source see the same batches: the online bootstrap makes them differ (σ > 0)."""
    import lightning.pytorch as pl
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_modules.regression import PropertyRegressor

    pl.seed_everything(0)
    x = torch.rand(256, 3)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(256, 1)
    source = tmp_path / "source.ckpt"
    net = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1))
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, source)
    module = PropertyRegressor(net, lr=1e-2, uncertainty="ensemble", ensemble_size=3, init_from=str(source))
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True))
    first = [m[0].weight for m in module.members]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    with torch.no_grad():
        assert module.eval().predict_with_std(x)[1].min() > 0
    # an ensemble as the source (active learning's warm start): each member goes on from its own weights
    torch.save({"state_dict": module.state_dict()}, tmp_path / "ensemble.ckpt")
    again = PropertyRegressor(nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1)), uncertainty="ensemble",
                              ensemble_size=3, init_from=str(tmp_path / "ensemble.ckpt"))
    again.trainer = pl.Trainer(logger=False)
    again.setup("fit")
    assert not again.members_start_equal
    assert all(torch.equal(a[0].weight, b[0].weight) for a, b in zip(again.members, module.members))


def test_mc_dropout_on_a_net_without_dropout_says_what_to_use(workdir):
    from lightning_modules.regression import PropertyRegressor

    with pytest.raises(ValueError, match="IRNet has none.*ensemble"):
        PropertyRegressor(IRNet(n_features=145), uncertainty="mc_dropout")


@pytest.mark.parametrize("kind,extra", [("mc_dropout", ["--model.init_args.mc_samples=8"]),
                                        ("ensemble", ["--model.init_args.ensemble_size=3"])])
def test_uncertainty_run_logs_scores_and_calibration_and_predicts_a_std(kind, extra, workdir):
    cli = train(task_args("elemnet", *SSUB, f"--model.init_args.uncertainty={kind}", *extra))
    run = search_runs(workdir, "ssub").iloc[0]
    for metric in ("test/nll", "test/coverage_68", "test/coverage_95", "test/std_mean", "test/mae"):
        assert pd.notna(run[f"metrics.{metric}"]), metric
    assert 0 <= run["metrics.test/coverage_68"] <= run["metrics.test/coverage_95"] <= 1
    assert run["metrics.test/std_mean"] > 0
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "plots")}
    assert "plots/calibration.png" in plots
    # σ recalibrated on the validation split: both methods scored, the headline is the calibrated one
    for method in ("conformal", "scale", "uncalibrated"):
        prefix = "test/uncalibrated" if method == "uncalibrated" else f"test/calibrated_{method}"
        assert 0 <= run[f"metrics.{prefix}/coverage_68"] <= run[f"metrics.{prefix}/coverage_95"] <= 1, method
    assert run["metrics.test/coverage_68"] == run["metrics.test/calibrated_conformal/coverage_68"]
    inp = workdir / "formulas.csv"
    pd.DataFrame({"formula": ["NaCl", "Fe2O3", "TiO2"]}).to_csv(inp, index=False)
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    import torch

    kept = torch.load(ckpt, map_location="cpu", weights_only=False)["sigma_calibration"]  # in the tested file
    assert kept["method"] == "conformal" and kept["n"] > 10
    from_ckpt = predict(["--model", ckpt, "--input", str(inp), "--output", str(workdir / "a.csv")])
    columns = ["formula", "formation_enthalpy_eV_per_atom", "std", "low_95", "high_95", "run_id", "in_training_data",
               "nearest_training_distance", "chemical_system_seen", "extrapolation"]
    assert list(from_ckpt.columns) == columns and (from_ckpt["std"] > 0).all()
    value = from_ckpt["formation_enthalpy_eV_per_atom"]
    assert (from_ckpt["low_95"] < value).all() and (value < from_ckpt["high_95"]).all()
    from_mlflow = predict(["--model", f"runs:/{run.run_id}/model", "--input", str(inp), "--output", str(workdir / "b.csv")])
    assert list(from_mlflow.columns) == columns and (from_mlflow["std"] > 0).all()
    if kind == "ensemble":  # deterministic: the checkpoint and the MLflow model agree exactly
        pd.testing.assert_frame_equal(from_ckpt, from_mlflow, atol=1e-5, rtol=1e-5)
        assert any(k.startswith("members.2.") for k in cli.model.state_dict())


@pytest.mark.parametrize("kind", ["mc_dropout", "ensemble"])
def test_intervals_widen_out_of_distribution(kind):
    """y = sin(3x) + noise seen on x in [-1, 1]: the predicted std at |x| in [3, 4] is over twice the std inside."""
    import lightning.pytorch as pl
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_modules.regression import PropertyRegressor

    pl.seed_everything(0)
    x = torch.rand(512, 1) * 2 - 1
    y = torch.sin(3 * x) + 0.05 * torch.randn_like(x)
    net = nn.Sequential(nn.Linear(1, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 128), nn.ReLU(), nn.Dropout(0.2),
                        nn.Linear(128, 1))
    module = PropertyRegressor(net, loss="mse", lr=3e-3, uncertainty=kind, mc_samples=64, ensemble_size=5)
    trainer = pl.Trainer(max_epochs=30, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True))
    module.eval()
    with torch.no_grad():
        inside = module.predict_with_std(torch.linspace(-0.9, 0.9, 50)[:, None])[1].mean()
        outside = module.predict_with_std(torch.cat([torch.linspace(-4, -3, 25), torch.linspace(3, 4, 25)])[:, None])[1]
    assert outside.mean() > 2 * inside, (kind, float(inside), float(outside.mean()))


@pytest.mark.parametrize("method", ["conformal", "scale"])
def test_calibration_restores_the_coverage_of_a_known_miscalibration(method):
    """σ three times too small (and errors from a Student t, not a normal): fitted on held-out rows, the
    intervals cover 68 % and 95 % of new rows; the state round-trips as a checkpoint keeps it."""
    from lightning_modules.calibration import SigmaCalibration

    g = torch.Generator().manual_seed(0)

    def rows(n):
        mean, std = torch.randn(n, generator=g), 0.05 + torch.rand(n, generator=g)
        noise = torch.distributions.StudentT(8.0).sample((n,)) if method == "conformal" else torch.randn(n, generator=g)
        return mean, std, mean + 3 * std * noise

    torch.manual_seed(0)
    calibration = SigmaCalibration.fit(*rows(4000), method=method)
    mean, std, true = rows(20000)
    raw = gaussian_scores(mean, std, true)
    assert raw["coverage_68"] < 0.35 and raw["coverage_95"] < 0.6  # the net's σ as it comes: overconfident
    scores = calibration.scores(mean, std, true)
    assert scores["coverage_68"].item() == pytest.approx(0.68, abs=0.02)
    assert scores["coverage_95"].item() == pytest.approx(0.95, abs=0.01)
    assert scores["nll"] < raw["nll"]
    again = SigmaCalibration.from_state(calibration.state())
    assert torch.equal(again.sigma(std), calibration.sigma(std))
    assert all(torch.equal(a, b) for a, b in zip(again.interval(mean, std, 0.95), calibration.interval(mean, std, 0.95)))
    with pytest.raises(ValueError, match="at least 10 held-out rows"):
        SigmaCalibration.fit(mean[:5], std[:5], true[:5])
