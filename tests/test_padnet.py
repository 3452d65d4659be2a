"""PADNet (diss. ch. 7): its layers against scipy, the classifier, bad inputs, stratified folds,
the 1D AdaBoost baseline, make cv for classification, make reproduce and make bench-xrd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from datamodules.xrd import XRDFramesDataModule, stratified_split, validate_library
from lightning_modules.classification import PhaseClassifier
from lightning_modules.nets.padnet import PADNet, PeakAreaDetection, max_filter
from materials.xrd_background import slope_filters

NAMES = tuple(f"c{k}" for k in range(8))


def test_slope_stage_and_max_filter_equal_scipy_for_f_50():
    frame = np.random.default_rng(0).poisson(300.0, (130, 140)).astype(np.float32)
    x = torch.from_numpy(frame)[None, None]
    peaks = PeakAreaDetection(filter_size=50)
    slopes = peaks.slopes(x)[0].detach().numpy()
    for k, f in enumerate(slope_filters(50)):  # Eq. 7.5: a correlation with each filter, borders replicated
        np.testing.assert_allclose(slopes[k], ndimage.correlate(frame.astype(np.float64), f, mode="nearest"), rtol=1e-5,
                                   atol=1e-2)
    m = max_filter(torch.from_numpy(slopes)[None].abs(), 50)[0].numpy()
    ref = ndimage.maximum_filter(np.abs(slopes), size=(1, 50, 50), mode="nearest")
    np.testing.assert_array_equal(m, ref)  # Eq. 7.7
    np.testing.assert_array_equal(max_filter(torch.from_numpy(slopes)[None].abs(), 50, stride=4)[0].numpy(),
                                  ref[:, ::4, ::4])
    out = peaks(x.expand(3, 1, 130, 140))  # Eq. 7.8: a softmax over the frame, scaled to mean 1
    np.testing.assert_allclose(out.sum((2, 3)).detach().numpy(), 130 * 140, rtol=1e-4)


def test_slac_and_nist_nets_shapes_halved_graphs_and_bad_inputs():
    slac = PADNet(n_features=64, n_frames=1, filter_size=6, pool_stride=2)
    nist = PADNet(n_features=64, n_frames=2, filter_size=6, pool_stride=2)
    composition = torch.full((3, 3), 1 / 3)
    assert slac(torch.rand(3, 1, 64, 64) * 100, composition).shape == (3, 8)
    assert nist(torch.rand(3, 2, 64, 64) * 100, composition).shape == (3, 8)
    assert len(nist.graphs) == 2 and nist.graphs[0].out_features == slac.graphs[0].out_features // 2
    n_slac, n_nist = (sum(p.numel() for p in m.parameters()) for m in (slac, nist))
    assert abs(n_slac - n_nist) / n_slac < 0.05  # the same budget, as the paper constrains it
    with pytest.raises(ValueError, match="2 frame.*30-60"):
        nist(torch.rand(3, 1, 64, 64), composition)
    with pytest.raises(ValueError, match="composition must be"):
        slac(torch.rand(3, 1, 64, 64), torch.rand(3, 4))
    with pytest.raises(ValueError, match="float frames"):
        slac(torch.randint(0, 9, (3, 1, 64, 64)), composition)
    with pytest.raises(ValueError, match="64"):
        slac(torch.rand(3, 1, 32, 32), composition)


@pytest.mark.parametrize("trainable", [False, True])
def test_frozen_slope_filters_stay_equation_7_and_trainable_ones_learn(trainable):
    torch.manual_seed(0)
    model = PhaseClassifier(PADNet(n_features=32, filter_size=4, pool_stride=2, trainable_filters=trainable,
                                   spatial_softmax=True))
    optimizer = model.configure_optimizers()
    frames, composition, y = torch.rand(4, 1, 32, 32) * 50, torch.full((4, 3), 1 / 3), torch.tensor([0, 1, 2, 3])
    before = model.net.graphs[0].peaks.slope.detach().clone()
    for _ in range(3):
        loss = model.loss_fn(model(frames, composition), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.net.graphs[0].peaks.slope.detach()
    assert torch.equal(before, torch.from_numpy(slope_filters(4))[:, None])
    assert torch.equal(before, after) != trainable


def _library(n=24, n_frames=1, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.poisson(50.0, (n, n_frames, 16, 16)).astype(np.uint32)
    composition = rng.dirichlet(np.ones(3), n)
    labels = np.arange(n) % 8
    return frames, composition, labels


def test_bad_frames_compositions_and_missing_nist_frame_are_named():
    frames, composition, labels = _library()
    validate_library(frames, composition, labels, 1, 8, "lib.h5")
    bad = frames.astype(np.float32)
    bad[5, 0, 3, 3] = -2.0
    with pytest.raises(ValueError, match="lib.h5: sample 5 has negative or NaN counts"):
        validate_library(bad, composition, labels, 1, 8, "lib.h5")
    bad[5, 0, 3, 3], bad[7, 0, 0, 0] = 1.0, np.nan
    with pytest.raises(ValueError, match="sample 7 has negative or NaN"):
        validate_library(bad, composition, labels, 1, 8, "lib.h5")
    wrong = composition.copy()
    wrong[3] *= 1.2
    with pytest.raises(ValueError, match=r"composition of sample 3 is .*\(sum 1.2\)"):
        validate_library(frames, wrong, labels, 1, 8, "lib.h5")
    with pytest.raises(ValueError, match="preset NIST records 2 frame.*30-60"):
        validate_library(frames, composition, labels, 2, 8, "lib.h5", "NIST")
    with pytest.raises(ValueError, match="integer or real counts"):
        validate_library(frames.astype(bool), composition, labels, 1, 8, "lib.h5")
    with pytest.raises(ValueError, match="integer or real counts"):
        validate_library(frames.astype(np.complex64), composition, labels, 1, 8, "lib.h5")
    with pytest.raises(ValueError, match="square frames"):
        validate_library(frames[:, :, :8], composition, labels, 1, 8, "lib.h5")
    with pytest.raises(ValueError, match="labels must be integers in"):
        validate_library(frames, composition, labels + 1, 1, 8, "lib.h5")


def test_stratified_folds_partition_keep_every_class_in_training_and_refuse_a_singleton():
    labels = np.repeat(np.arange(8), [37, 31, 27, 24, 20, 17, 14, 7])
    seen = []
    for fold in range(10):
        parts = stratified_split(labels, "kfold", 10, fold, 0.1, 0.1, 0, NAMES)
        assert set(np.bincount(labels[parts["train"]], minlength=8).nonzero()[0]) == set(range(8))
        assert not set(parts["train"]) & set(parts["val"]) | set(parts["train"]) & set(parts["test"])
        seen.append(parts["test"])
        assert 17 <= len(parts["test"]) <= 18
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(len(labels)))
    lonely = np.concatenate([labels, [8]])
    with pytest.raises(ValueError, match="class 'c8' has 1 sample"):
        stratified_split(lonely, "kfold", 10, 0, 0.1, 0.1, 0, NAMES + ("c8",))


def test_user_file_goes_through_the_same_checks(tmp_path):
    frames, composition, labels = _library(n_frames=2)
    good = tmp_path / "good.npz"
    np.savez(good, frames=frames, composition=composition, label=labels)
    dm = XRDFramesDataModule(preset="NIST", dataset=str(good), n_folds=3, train_input="I-CS", background_filter=5)
    dm.setup()
    assert dm.n_features == 16 and sum(len(a["label"]) for a in dm.arrays.values()) == 24
    x, c, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (2, 16, 16) and x.dtype == torch.float32
    np.savez(tmp_path / "one.npz", frames=frames[:, :1], composition=composition, label=labels)
    with pytest.raises(ValueError, match="one.npz: preset NIST records 2 frame"):
        XRDFramesDataModule(preset="NIST", dataset=str(tmp_path / "one.npz"), n_folds=3).setup()


@pytest.mark.parametrize("augment", [False, True])
def test_mixed_training_input_shows_each_sample_as_raw_or_background_removed(tmp_path, augment):
    from materials.xrd_background import background, background_removed

    frames, composition, labels = _library()
    path = tmp_path / "lib.npz"
    np.savez(path, frames=frames, composition=composition, label=labels)
    dm = XRDFramesDataModule(dataset=str(path), n_folds=3, train_input="mixed", test_input="I-CS",
                             background_filter=5, augment=augment)
    dm.setup()
    inputs = {}
    for split, rows in dm.parts.items():
        mf, cs = background(frames[rows].astype(np.float32), 5)
        inputs[split] = np.stack([background_removed(frames[rows], mf, cs, k) for k in ("I", "I-MF", "I-CS")], 1)
    n_train, n_val = len(dm.parts["train"]), len(dm.parts["val"])
    assert dm.arrays["train"]["frames"].shape == (n_train, 3, 1, 16, 16)
    np.testing.assert_allclose(dm.arrays["train"]["frames"], inputs["train"], rtol=1e-6)
    # validation: every sample once per input, labels repeated alongside
    val = dm.arrays["val"]
    assert val["frames"].shape == (3 * n_val, 1, 16, 16) and dm.cleaning_report["sizes"]["val"] == n_val
    np.testing.assert_allclose(val["frames"], inputs["val"].swapaxes(0, 1).reshape(-1, 1, 16, 16), rtol=1e-6)
    np.testing.assert_array_equal(val["label"], np.tile(labels[dm.parts["val"]], 3))
    np.testing.assert_allclose(dm.arrays["test"]["frames"], inputs["test"][:, 2], rtol=1e-6)  # I-CS only
    # training batches: each sample drawn as one of its inputs (mirrored or not), every input drawn
    seen = np.zeros((n_train, 3), bool)
    for _ in range(8):
        x, c, y = dm.splits["train"][torch.arange(n_train)]
        assert x.shape == (n_train, 1, 16, 16)
        np.testing.assert_array_equal(y.numpy(), labels[dm.parts["train"]])
        for i in range(n_train):
            views = [inputs["train"][i, k] for k in range(3)]
            views += [v[..., ::-1] for v in views] if augment else []
            match = [np.allclose(x[i].numpy(), v, rtol=1e-6) for v in views]
            assert any(match), i
            seen[i, [k % 3 for k, m in enumerate(match) if m]] = True
    assert seen.any(0).all() and seen.sum() > n_train  # all three inputs appear; samples vary between batches
    with pytest.raises(ValueError, match="test_input must be one of"):
        XRDFramesDataModule(dataset=str(path), test_input="mixed")


def test_1d_baseline_runs_on_a_tiny_generated_library():
    from callbacks.xrd_baselines import baseline_scores, pattern_features

    for preset, points in (("SLAC", 931), ("NIST", 2501)):
        dm = XRDFramesDataModule(preset=preset, n_samples=24, frame_size=64, n_folds=3)
        dm.prepare_data()
        dm.setup()
        fit = np.sort(np.concatenate([dm.parts["train"], dm.parts["val"]]))
        train = {"frames": dm.raw_frames(fit), "composition": dm.composition(fit), "label": dm.labels(fit)}
        test_rows = dm.parts["test"]
        test = {"frames": dm.raw_frames(test_rows), "composition": dm.composition(test_rows), "label": dm.labels(test_rows)}
        features = pattern_features(train["frames"], dm.instrument)
        assert features.shape == (len(fit), points) and np.isclose(features.max(1), 1).all()
        scores = baseline_scores(train, test, dm.instrument, {"estimator__max_depth": [2, 3], "learning_rate": [1.0],
                                                              "n_estimators": [5]})
        assert set(scores) == {"adaboost", "adaboost_composition", "composition_only"}
        assert all(0 <= s["acc"] <= 1 and s["params"]["estimator__max_depth"] in (2, 3) for s in scores.values())


@pytest.mark.slow
def test_cross_validation_of_a_classifier_nests_folds_with_accuracy_and_a_summed_confusion(workdir):
    import mlflow

    from cli.cv import main
    from conftest import search_runs, task_args

    text = main(["--task", "padnet", "--folds", "2", "--", *task_args("padnet", "--trainer.max_epochs=1")])
    runs = search_runs(workdir, "xrd_slac")
    parent = runs[runs["tags.cv.folds"] == "2"].iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
    assert parent.status == "FINISHED" and len(children) == 2
    accs = children["metrics.test/acc"].to_numpy()
    assert parent["metrics.cv/test/acc_mean"] == pytest.approx(accs.mean())
    assert parent["metrics.cv/test/acc_std"] == pytest.approx(accs.std(ddof=1))
    assert np.isfinite(parent["metrics.cv/test/baseline/adaboost/acc_mean"])  # the baseline in the same folds
    assert "test/baseline/adaboost_composition/acc" in text
    client = mlflow.MlflowClient()
    confusion = client.download_artifacts(parent.run_id, "confusion/confusion_matrix.json")
    matrix = np.array(__import__("json").load(open(confusion))["matrix"])
    assert matrix.shape == (8, 8) and matrix.sum() == 24  # every sample tested once


@pytest.mark.slow
def test_reproduce_writes_the_figure_7_7_grid(workdir):
    from cli.reproduce import main
    from conftest import search_runs, task_args

    args = task_args("padnet", "--trainer.max_epochs=1")[4:]  # the task's configs are the table's own
    text = main(["padnet", "--folds", "2", "--train-inputs", "I-CS", "--filters", "frozen", "--output",
                 str(workdir / "fig.md"), "--", *args])
    assert "| frozen | I-CS |" in text and "hardware:" in text and "wall time" in text
    assert (workdir / "fig.md").read_text() == text
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()]  # 2 folds x 1 filter kind x 1 train input
    assert len(cells) == 2 and (cells["metrics.train_seconds"] > 0).all()  # summed in the "wall time" line
    assert (cells["status"] == "FINISHED").all()
    for test_input in ("I", "I-MF", "I-CS"):  # each cell tested on every input
        assert cells[f"metrics.grid/test_{test_input}/acc"].between(0, 1).all()
    assert not any(c.startswith("metrics.test/baseline/") for c in cells.columns)  # the 1D baselines: make cv only


@pytest.mark.slow
def test_bench_xrd_reports_rates(workdir):
    from cli.bench.xrd import main

    results = main(["--size", "128", "--n", "2", "--background-filter", "13", "--filter-size", "4",
                    "--channels", "8", "16", "--batch", "1", "--simulate", "1"])
    for key in ("background_scipy_frames_per_s", "background_torch_cpu_frames_per_s", "padnet_slac_cpu_samples_per_s",
                "padnet_nist_cpu_samples_per_s", "simulate_slac_samples_per_s"):
        assert results[key] > 0, key
