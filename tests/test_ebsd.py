"""EBSD pattern sets: kikuchipy's own patterns, a cache that round-trips, resumes and repairs itself,
bad input named, dictionary indexing that recovers an exact orientation, the datamodule's batches."""

from __future__ import annotations

import dataclasses
import shutil

import h5py
import numpy as np
import pytest
import torch

from datamodules.simulate.ebsd import (CHUNK, SETS, EBSDDatasetSpec, check_detector, generate, master_pattern,
                                       open_checked, orientations, project)
from materials.ebsd_patterns import (NOISE_SWEEP, MeasurementCondition, NoiseRanges, PatternNoise, check_patterns, gaussian_blur,
                                    process_patterns)
from materials.orientations import cubic_symmetry, disorientation, quaternion_multiply

# 3 blocks of noisy patterns (the last one partial), a 125-pattern dictionary
SPEC = EBSDDatasetSpec(semi_edge_steps=(7,), n_val=40, n_test=2 * CHUNK + 44, batch=CHUNK)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("ebsd")
    path, stats = generate(SPEC, root, progress=False)
    with h5py.File(path, "r") as f:
        arrays = {name: {k: f[name][k][:] for k in ("patterns", "quaternions", "euler")} for name in SETS}
    return path, stats, arrays


@pytest.fixture(scope="module")
def mp():
    return master_pattern()


def _copy(path, tmp_path):
    root = tmp_path / "copy"
    root.mkdir()
    shutil.copy(path, root / path.name)
    return root, root / path.name


def _same(path, arrays):
    with h5py.File(path, "r") as f:
        for name in SETS:
            for key, values in arrays[name].items():
                assert np.array_equal(f[name][key][:], values), (name, key)


def test_patterns_are_kikuchipys_own_and_the_cache_round_trips(cache, mp):
    path, stats, arrays = cache
    assert stats["patterns"] == len(arrays["dictionary"]["patterns"]) + SPEC.n_val + SPEC.n_test
    assert stats["patterns_per_s"] > 0
    q = arrays["dictionary"]["quaternions"]
    assert len(q) == len(orientations(SPEC, "dictionary")) > 100 and (q[:, 0] > 0.85).all()  # inside the FZ
    from orix.quaternion import Rotation

    own = mp.get_patterns(Rotation(q), SPEC.detector(), energy=20, dtype_out=np.uint8, compute=True,
                          show_progressbar=False).data
    assert np.array_equal(arrays["dictionary"]["patterns"], own)
    assert np.allclose(Rotation(q).to_euler(), arrays["dictionary"]["euler"])
    again, stats = generate(SPEC, path.parent, progress=False)  # read back, nothing simulated twice
    assert again == path and stats["patterns"] == 0
    with open_checked(path, SPEC) as f:
        assert np.array_equal(f["test"]["patterns"][:], arrays["test"]["patterns"])
        assert all(f[name].attrs["patterns_per_s"] > 0 for name in SETS)  # the rate it was made at, kept
    assert dataclasses.replace(SPEC, noise=PatternNoise(counts=10)).cache_name() != SPEC.cache_name()
    assert dataclasses.replace(SPEC, batch=999).cache_name() == SPEC.cache_name()  # speed only


def _ncc(a, b) -> torch.Tensor:
    """Normalised cross-correlation of each pattern of ``a`` with the same row of ``b`` (or with b's one row)."""
    a, b = torch.as_tensor(a).double().reshape(len(a), -1), torch.as_tensor(b).double().reshape(len(b), -1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def _datamodule(cache, monkeypatch, **kwargs):
    """An EBSDDataModule over the module's small cache file (copied where the datamodule looks for it)."""
    from datamodules.ebsd import EBSDDataModule

    path, _, _ = cache
    monkeypatch.setenv("MATDL_DATA_DIR", str(path.parent.parent))
    (path.parent.parent / "ebsd").mkdir(exist_ok=True)
    shutil.copy(path, path.parent.parent / "ebsd" / path.name)
    return EBSDDataModule(semi_edge_steps=[7], n_val=40, n_test=SPEC.n_test, **kwargs)


def test_noisy_sets_are_measured_from_the_same_physics(cache, mp):
    _, _, arrays = cache
    test = arrays["test"]
    clean = process_patterns(project(mp, SPEC.detector(), test["quaternions"][:20], 20))
    ncc = _ncc(clean, process_patterns(test["patterns"][:20]))
    assert 0.4 < ncc.min() and ncc.max() < 0.98  # the same pattern under real noise
    assert not np.array_equal(arrays["val"]["patterns"][:5], test["patterns"][:5])
    x = np.random.default_rng(0).random((3, 60, 60))
    from scipy.ndimage import gaussian_filter

    assert np.abs(gaussian_blur(torch.from_numpy(x), 7.5).numpy()
                  - gaussian_filter(x, (0, 7.5, 7.5), mode="nearest")).max() < 1e-12


def test_interrupted_generation_resumes_to_the_same_file(cache, tmp_path):
    path, _, arrays = cache
    root, copy = _copy(path, tmp_path)
    with h5py.File(copy, "r+") as f:  # killed during the test set's second block: counter 256, garbage after
        f["test"].attrs["n_done"] = CHUNK
        f["test"]["patterns"][CHUNK:] = 7
    with pytest.raises(ValueError, match="test set unfinished"):
        open_checked(copy, SPEC)
    _, stats = generate(dataclasses.replace(SPEC, batch=2 * CHUNK), root, progress=False)
    assert stats["patterns"] == SPEC.n_test - CHUNK  # only the rest
    _same(copy, arrays)


def test_a_corrupted_chunk_is_detected_and_regenerated(cache, tmp_path):
    path, _, arrays = cache
    root, copy = _copy(path, tmp_path)
    with h5py.File(copy, "r") as f:
        info = f["test"]["patterns"].id.get_chunk_info(1)  # patterns 256..511
    with open(copy, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\x00\xff" * 8)
    with open_checked(copy, SPEC) as f, pytest.raises(OSError):
        f["test"]["patterns"][:]  # never silently used
    with pytest.warns(UserWarning, match="fail their checksum"):
        _, stats = generate(SPEC, root, progress=False)
    assert stats["patterns"] == SPEC.n_test - CHUNK
    _same(copy, arrays)


@pytest.mark.parametrize("damage", ["truncated", "other parameters"])
def test_an_unusable_file_is_moved_aside_and_simulated_again(cache, tmp_path, damage):
    path, _, arrays = cache
    root, copy = _copy(path, tmp_path)
    if damage == "truncated":
        with open(copy, "r+b") as fh:
            fh.truncate(copy.stat().st_size // 3)
    else:
        with h5py.File(copy, "r+") as f:
            f.attrs["spec"] = f.attrs["spec"].replace('"seed": 0', '"seed": 5')
    with pytest.warns(UserWarning, match="moved to"):
        generate(SPEC, root, progress=False)
    assert copy.with_suffix(".corrupt").exists()
    _same(copy, arrays)


def test_bad_patterns_and_geometry_are_named():
    good = np.zeros((4, 60, 60), np.uint8)
    assert check_patterns(good, (60, 60)).shape == (4, 60, 60)
    with pytest.raises(ValueError, match="patterns are 50x60 pixels, the detector of the dictionary is 60x60"):
        check_patterns(np.zeros((2, 50, 60)), (60, 60))
    with pytest.raises(ValueError, match="expected \\(n, H, W\\)"):
        check_patterns(np.zeros((2, 1, 60, 60)), (60, 60))
    with pytest.raises(ValueError, match="integers or floats, got dtype <U1"):
        check_patterns(np.full((1, 60, 60), "a"), (60, 60))
    with pytest.raises(ValueError, match="integers or floats, got dtype torch.bool"):
        check_patterns(torch.zeros(1, 60, 60, dtype=torch.bool))
    nan = np.zeros((3, 60, 60), np.float32)
    nan[2, 5, 7] = np.nan
    with pytest.raises(ValueError, match="pattern 2 has a non-finite pixel \\(nan\\) at row 5, column 7"):
        process_patterns(nan)
    detector = SPEC.detector()
    check_detector(detector, SPEC)
    with pytest.raises(ValueError, match="detector is 30x30 pixels"):
        check_detector(dataclasses.replace(SPEC, shape=(30, 30)).detector(), SPEC)
    with pytest.raises(ValueError, match="sample_tilt 60° differs"):
        check_detector(dataclasses.replace(SPEC, sample_tilt=60.0).detector(), SPEC)
    with pytest.raises(ValueError, match="projection centre .* is more than 0.01"):
        check_detector(dataclasses.replace(SPEC, pc=(0.5, 0.213367, 0.500707)).detector(), SPEC)
    with pytest.raises(ValueError, match="counts must be > 0"):
        PatternNoise(counts=0)


def test_dictionary_indexing_recovers_the_exact_orientation_of_a_noise_free_pattern(cache, mp):
    from callbacks.ebsd_baselines import dictionary_index
    from datamodules.ebsd import prepared

    _, _, arrays = cache
    dictionary = arrays["dictionary"]
    q = torch.from_numpy(dictionary["quaternions"])
    rows = torch.tensor([3, 50, 90, 120])
    s = cubic_symmetry(torch.float64)[torch.tensor([0, 7, 13, 20])]
    equivalent = quaternion_multiply(s, q[rows])  # the same crystal orientation, another representative
    patterns = project(mp, SPEC.detector(), equivalent.numpy(), SPEC.energy)
    xmap, _ = dictionary_index(prepared(patterns), prepared(dictionary["patterns"]), q.numpy(), mp.phase)
    found = torch.from_numpy(xmap.rotations.data.reshape(-1, 4))
    assert torch.equal(torch.from_numpy(xmap.simulation_indices.reshape(-1)), rows)
    assert disorientation(found, equivalent).max() < 1e-6
    # the identity operator gives kikuchipy's very pattern; the others differ only by the master pattern's
    # interpolation (its Lambert grid is not invariant under every cube rotation)
    assert xmap.scores.reshape(-1)[0] > 0.9999 and (xmap.scores.reshape(-1) > 0.99).all()


def test_datamodule_batches_real_patterns_and_noise_augmentation(cache, monkeypatch):
    from datamodules.ebsd import EBSDDataModule

    dm = _datamodule(cache, monkeypatch, train_noise=True, batch_size=32)
    assert dm.n_features == 60 and dm.path.exists()
    dm.prepare_data()
    assert dm.generation["patterns"] == 0  # found, verified, not simulated again
    dm.setup()
    x, q = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 60, 60) and x.dtype == torch.float32 and q.shape == (32, 4)
    assert x.min() == 0 and x.max() == 1
    x2, q2 = next(iter(dm.train_dataloader()))
    assert torch.equal(q, q2) and not torch.equal(x, x2)  # the same patterns, measured afresh
    xt, qt = next(iter(dm.test_dataloader()))
    assert xt.shape[0] == min(dm.hparams.eval_batch_size, SPEC.n_test) == 64
    assert torch.allclose(qt.double(), dm.arrays["test"]["quaternions"][:len(qt)])
    assert dm.real["patterns"].shape == (9, 60, 60) and dm.real["nav_shape"] == (3, 3)
    assert dm.cleaning_report["sizes"] == {"train": 125, "val": 40, "test": SPEC.n_test}
    assert set(dm.sweep) == set(NOISE_SWEEP) and all(p.shape == (SPEC.n_test, 60, 60) for p in dm.sweep.values())
    assert dm.cleaning_report["simulated_dictionary_patterns_per_s"] > 0
    with pytest.raises(ValueError, match="either semi_edge_steps or resolution"):
        EBSDDataModule(semi_edge_steps=[7], resolution=3.0)
    assert EBSDDataModule(resolution=4.0).spec.semi_edge_steps == (33,)  # orix: 4° -> N = 33 (11,935 patterns)


def test_a_random_training_set_is_noise_free_and_dictionary_indexing_keeps_the_dictionary(cache, mp, monkeypatch,
                                                                                          tmp_path):
    from datamodules.ebsd import EBSDDataModule

    _, _, arrays = cache
    spec = dataclasses.replace(SPEC, n_train=50)
    assert "n_train" not in SPEC.content() and spec.cache_name() != SPEC.cache_name()  # older caches keep their names
    monkeypatch.setenv("MATDL_DATA_DIR", str(tmp_path))
    dm = EBSDDataModule(semi_edge_steps=[7], n_val=40, n_test=SPEC.n_test, train_orientations=50, noise_sweep=False,
                        batch_size=16)
    assert dm.spec == spec
    dm.prepare_data()
    dm.setup()
    train = dm.arrays["train"]["quaternions"].numpy()
    assert len(train) == 50 and (train[:, 0] > 0.85).all()  # random orientations in the fundamental zone
    with open_checked(dm.path, spec) as f:  # kikuchipy's patterns of them, no noise; the other sets unchanged
        assert np.array_equal(f["train"]["patterns"][:], project(mp, spec.detector(), train, spec.energy))
        for name in SETS:
            assert np.array_equal(f[name]["quaternions"][:], arrays[name]["quaternions"])
    assert disorientation(torch.from_numpy(train), torch.from_numpy(orientations(SPEC, "dictionary"))[:, None],
                          cubic_symmetry()).min() > 1e-3  # none of them a grid point
    assert len(dm.arrays["dictionary"]["patterns"]) == 125  # what dictionary indexing searches
    assert dm.cleaning_report["sizes"] == {"train": 50, "val": 40, "test": SPEC.n_test, "dictionary": 125}
    assert dm.cleaning_report["trained_on"] == "train"
    x, q = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 60, 60) and q.shape == (16, 4)
    with pytest.raises(ValueError, match="n_train must be >= 0"):
        dataclasses.replace(SPEC, n_train=-1)


def test_simulated_twins_of_the_real_patterns_match_them_where_a_wrong_orientation_does_not(cache, mp, monkeypatch):
    """A twin has its real pattern's orientation (here dictionary indexing's, a coarse dictionary) and projection
    centre: it correlates with the real pattern; the same twin turned by 30° does not."""
    from callbacks.ebsd_baselines import dictionary_index, real_twins

    dm = _datamodule(cache, monkeypatch)
    dm.prepare_data()
    dm.setup()
    train = dm.arrays["train"]
    xmap, _ = dictionary_index(dm.real["patterns"], train["patterns"], train["quaternions"].numpy(), mp.phase)
    q = xmap.rotations.data.reshape(-1, 4)
    turn = np.array([np.cos(np.pi / 12), np.sin(np.pi / 12), 0, 0])  # 30° about x
    turned = quaternion_multiply(torch.from_numpy(turn)[None], torch.from_numpy(q)).numpy()

    twins, wrong = real_twins(dm, mp, dm.real["detector"], q), real_twins(dm, mp, dm.real["detector"], turned)
    assert twins["ideal"].shape == twins["measured"].shape == dm.real["patterns"].shape
    found, turned_away = _ncc(dm.real["patterns"], twins["ideal"]), _ncc(dm.real["patterns"], wrong["ideal"])
    assert (found > turned_away + 0.02).all() and found.mean() > turned_away.mean() + 0.05  # NCC 0.05-0.09 against ~0
    assert not torch.equal(twins["ideal"], twins["measured"])


@pytest.mark.parametrize("representation,outputs", [("euler", 3), ("quaternion", 4), ("rot6d", 6)])
def test_omnet_structure_shared_trunk_and_one_branch_per_output(representation, outputs):
    from torch import nn

    from lightning_modules.nets import OMNet

    net = OMNet(60, representation=representation)
    assert net(torch.rand(5, 1, 60, 60)).shape == (5, outputs) and len(net.branches) == outputs
    assert sum(isinstance(m, nn.Conv2d) for m in net.trunk) == 8
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.trunk) == 2
    path = [m for m in net.trunk if isinstance(m, nn.Linear)] + [m for m in net.branches[0] if isinstance(m, nn.Linear)]
    assert len(path) == 5  # one shared dense layer + four per branch
    net.branches[1][0].weight.data.zero_()  # the branches are independent: one branch's weights move one output
    x = torch.rand(4, 1, 60, 60)
    net.eval()
    before = net(x)
    with torch.no_grad():
        net.branches[0][-1].bias += 1.0
    changed = (net(x) - before).abs().amax(0) > 0
    assert changed.tolist() == [True] + [False] * (outputs - 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 training: the outputs stay float32
        assert net(x).dtype == torch.float32
    with torch.device("meta"):  # the paper profile's widths, counted without allocating 800 MB
        paper = OMNet(60, channels=(64, 64, 128, 128, 256, 256, 256, 256), shared_width=3328,
                      branch_widths=(512, 512, 256))
    assert sum(p.numel() for p in paper.parameters()) == 200_333_763
    assert sum(p.numel() for p in paper.branches[0].parameters()) == 2_101_249  # "around 2 million" each
    with pytest.raises(ValueError, match="at least 4 pixels"):
        OMNet(3)


def test_omnets_inference_form_predicts_what_the_trained_module_does_and_standardizing_ignores_gain_and_offset():
    from torch import nn

    from lightning_modules.batchnorm import recompute_batchnorm_statistics
    from lightning_modules.nets import OMNet

    torch.manual_seed(0)
    net = OMNet(60, representation="quaternion", standardize=True)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = gaussian_blur(torch.rand(16, 60, 60), 3.0)[:, None], torch.randn(16, 4)  # smooth "bands"
    for _ in range(5):  # trained affine weights of batch normalisation, and statistics of its own
        optimizer.zero_grad()
        (net(x) - y).square().mean().backward()
        optimizer.step()
    recompute_batchnorm_statistics(net, [x], net, 1)  # the statistics of these patterns
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = net.for_inference()
    assert net.training and all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # untouched
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    assert fast.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    net.trunk.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        net.eval()
        features = net.trunk(x)
        assert features.std(0).mean() > 0.05 * features.abs().mean()  # the shared features differ between patterns
        torch.testing.assert_close(fast.trunk(x), features, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-4)
        net(0.3 * x + 0.5)  # the trunk sees each pattern at zero mean and unit deviation: gain and offset gone
        torch.testing.assert_close(seen[-1], seen[-2], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(seen[-1].std(dim=(-2, -1), unbiased=False), torch.ones(16, 1), atol=1e-3, rtol=0)
        net.standardize = False
        net(x)
        assert torch.equal(seen[-1], x)


def test_noise_sweep_conditions_are_reproducible_from_their_name_and_seed(cache, tmp_path):
    """Each condition is the test orientations measured under it: the same from its name and seed whatever else
    the sweep holds, different between conditions; a PC error moves the bands; a damaged file is simulated
    again."""
    from datamodules.simulate.ebsd_sweep import generate_sweep, read_sweep, sweep_cache_name

    path, _, arrays = cache
    sweep = read_sweep(SPEC, tmp_path / "a")
    assert np.array_equal(sweep["quaternions"], arrays["test"]["quaternions"])
    assert set(sweep) == {"quaternions", *NOISE_SWEEP}
    alone = {name: NOISE_SWEEP[name] for name in ("counts-3", "pc-error-0.01")}
    subset = read_sweep(SPEC, tmp_path / "b", alone)
    for name in alone:
        assert np.array_equal(subset[name], sweep[name]), name
    assert sweep_cache_name(SPEC, alone) != sweep_cache_name(SPEC)
    names = list(NOISE_SWEEP)
    assert all(not np.array_equal(sweep[a], sweep[b]) for a in names for b in names if a < b)
    # noise-free recordings: the PC error alone changes the patterns, by more than another orientation's noise
    clean = PatternNoise(counts=1e9, background=0.0, blur=0.0, read_noise=0.0)
    exact = read_sweep(SPEC, tmp_path / "c", {"nominal": MeasurementCondition(clean),
                                              "shifted": MeasurementCondition(clean, (0.01, -0.01, 0.01))})
    nominal, shifted = (process_patterns(exact[k]) for k in ("nominal", "shifted"))
    assert (nominal - shifted).abs().mean() > 0.02
    file = tmp_path / "a" / sweep_cache_name(SPEC)
    with h5py.File(file, "r+") as f:
        f.attrs["spec"] = "{}"
    with pytest.warns(UserWarning, match="moved to .*corrupt"):
        again = read_sweep(SPEC, tmp_path / "a")
    assert all(np.array_equal(again[k], sweep[k]) for k in sweep)
    assert generate_sweep(SPEC, tmp_path / "a") == file


def test_a_ramp_background_is_another_shape_of_the_same_mean():
    ramp = PatternNoise(background_shape="ramp").background_profile((60, 60), 0.42)
    gaussian = PatternNoise().background_profile((60, 60), 0.42)
    assert torch.allclose(ramp.mean(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.all(ramp[1:, 0] > ramp[:-1, 0]) and torch.equal(ramp[:, 0], ramp[:, -1])
    assert not torch.allclose(ramp, gaussian)
    assert "background_shape" not in PatternNoise().content()  # the caches made before it keep their names
    with pytest.raises(ValueError, match="background_shape"):
        PatternNoise(background_shape="flat")


@pytest.mark.slow
def test_an_omnet_run_reports_both_methods_under_every_sweep_condition(workdir):
    """The task's run logs OMNet and dictionary indexing on each noise-sweep condition, the table and the plot."""
    import mlflow
    import pandas as pd

    from cli.train import main
    from conftest import search_runs, task_args

    main(task_args("omnet", "--trainer.max_epochs=1"))
    run = search_runs(workdir, "ebsd_ni").iloc[0]
    for name in NOISE_SWEEP:
        for method in ("omnet", "dictionary_indexing"):
            assert 0 <= run[f"metrics.test/sweep/{name}/{method}/mde"] <= 180, (name, method)
    assert run["metrics.test/sweep/omnet_wins"] in range(len(NOISE_SWEEP) + 1)
    assert pd.notna(run["metrics.test/baseline/dictionary_indexing/mde"])  # the test set's own comparison
    # the real patterns: OMNet's answer refined, both routes timed, a row per pattern
    assert 0 <= run["metrics.test/real/omnet_refined/mde"] <= run["metrics.test/real/omnet/mde"] + 5
    assert run["metrics.test/real/omnet_refined/seconds"] > 0 and run["metrics.test/real/dictionary_indexing_refined/seconds"] > 0
    assert 0 <= run["metrics.test/real/twins/omnet/mde"] <= 180 and 0 <= run["metrics.test/real/twins_measured/omnet/mde"] <= 180
    baselines = mlflow.artifacts.load_text(f"runs:/{run.run_id}/ebsd_baselines.md")
    assert "OMNet + refinement" in baselines and "| 8 |" in baselines
    table = mlflow.artifacts.load_text(f"runs:/{run.run_id}/ebsd_noise_sweep.md")
    assert all(f"| {name} |" in table for name in NOISE_SWEEP)
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "plots")}
    assert "plots/noise_sweep.png" in plots


def test_precise_batchnorm_measures_the_statistics_on_training_batches_before_each_validation(workdir):
    """With precise_bn = 3 the statistics the model is validated (and checkpointed) with come from 3 training
    batches at the final weights, not from the running averages of the 4 training steps."""
    from cli.train import build
    from conftest import task_args

    def trained(*args):
        cli = build(task_args("omnet", "--trainer.max_epochs=1", "--trainer.limit_train_batches=4",
                              "--trainer.limit_val_batches=1", "--data.init_args.batch_size=8", *args))
        cli.trainer.fit(cli.model, cli.datamodule)
        layers = [m for m in cli.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert layers and not any(m.momentum is None for m in layers)
        return {int(m.num_batches_tracked) for m in layers}

    assert trained("--model.init_args.precise_bn=3") == {3}
    assert trained() == {4}


def test_randomized_training_noise_draws_a_measurement_per_batch_within_its_ranges(workdir):
    from cli.train import build
    from conftest import task_args

    ranges = NoiseRanges()
    g = torch.Generator().manual_seed(0)
    draws = [ranges.draw(g) for _ in range(400)]
    for name in ("counts", "background", "background_width", "blur", "read_noise"):
        values = [getattr(d, name) for d in draws]
        low, high = getattr(ranges, name)
        assert low <= min(values) and max(values) <= high and max(values) - min(values) > 0.8 * (high - low), name
    counts = np.log([d.counts for d in draws])  # log-uniform: as many draws below the geometric middle as above
    assert abs(np.mean(counts < np.log(np.sqrt(2.0 * 500.0))) - 0.5) < 0.1
    assert 0.2 < np.mean([d.background_shape == "ramp" for d in draws]) < 0.4
    with pytest.raises(ValueError, match="noise range counts"):
        NoiseRanges(counts=(0.0, 10.0))
    # through the task's config: each training batch of the same rows is measured under another draw
    cli = build(task_args("omnet", "--data.init_args.train_noise=randomized",
                          "--data.init_args.noise_ranges.blur=[0.0, 1.0]"))
    dm = cli.datamodule
    assert dm.noise_ranges.blur == (0.0, 1.0)
    dm.prepare_data()
    dm.setup()
    first, second = (dm.splits["train"][torch.arange(16)][0] for _ in range(2))
    assert first.shape == (16, 1, 60, 60) and not torch.equal(first, second)
    assert isinstance(dm.splits["train"].noise, NoiseRanges)
    # within a batch, each group of patterns_per_draw patterns has its own draw: one pattern 16 times, measured
    # at counts from 2 to 1e5, matches its clean self to a varying degree only across draws
    rows, same = dm.splits["train"], torch.zeros(16, dtype=torch.long)
    clean = process_patterns(rows.patterns[:1])

    def ncc_spread(per_draw: int) -> float:
        rows.noise = NoiseRanges(counts=(2.0, 1e5), blur=(0.0, 0.0), read_noise=(0.0, 0.0), patterns_per_draw=per_draw)
        return float(_ncc(rows[same][0], clean).std())

    torch.manual_seed(0)
    assert ncc_spread(1) > 3 * ncc_spread(16)
    with pytest.raises(ValueError, match="patterns_per_draw"):
        NoiseRanges(patterns_per_draw=0)
