"""The microstructure GAN and design in its latent space: nets, images, the columnar solver, the commands."""

import numpy as np
import pytest
import torch

from cli.configs import task_configs
from conftest import run_checkpoints, run_module
from lightning_modules.gan import AdversarialTraining, DescriptorSets
from lightning_modules.nets import MicrostructureGAN
from lightning_modules.nets.microstructure_gan import PeriodicConv2d
from materials.bounds import laminate_c11, voigt_c11
from materials.elasticity import TwoPhaseElasticity
from materials.microstructure import gaussian_random_images


def test_the_paper_shapes_a_16_number_latent_to_128_pixel_images_and_back_to_one_logit():
    gan = MicrostructureGAN(generator_channels=(16, 8, 8, 4), discriminator_channels=(4, 8, 8, 16))
    images = gan(torch.randn(3, 16))
    assert gan.latent_dim == 16 and images.shape == (3, 1, 128, 128)
    assert 0 < images.min() and images.max() < 1
    assert gan.discriminator(images).shape == (3, 1)
    with pytest.raises(ValueError, match="gives 128-pixel images, not 64"):
        MicrostructureGAN(n_features=64)



def test_resized_upsampling_and_a_spectrally_normalised_discriminator_keep_the_shapes():
    gan = MicrostructureGAN(generator_channels=(16, 8, 8, 4), discriminator_channels=(4, 8, 8, 16),
                            upsampling="resize", spectral_norm=True)
    images = gan(torch.randn(3, 16))
    assert images.shape == (3, 1, 128, 128) and 0 < images.min() and images.max() < 1
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in gan.generator.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gan.discriminator.modules())
    for _ in range(20):  # power iterations, one per training-mode forward
        gan.discriminator(images.detach())
    convs = [m for m in gan.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2).item() for c in convs]
    assert len(convs) == 5 and all(abs(n - 1) < 0.05 for n in norms), norms
    with pytest.raises(ValueError, match="upsampling"):
        MicrostructureGAN(upsampling="bilinear")


@pytest.mark.parametrize("upsampling", ["transposed", "resize"])
def test_a_periodic_generator_turns_a_rolled_latent_map_into_the_same_image_rolled(upsampling):
    """Circular padding: the image is a periodic cell, so shifting the 4 × 4 latent map by one shifts the
    128-pixel image by 32 pixels exactly (zero padding breaks this at the edges)."""
    z = torch.randn(2, 4, 4)
    for periodic in (True, False):
        gan = MicrostructureGAN(generator_channels=(8, 8, 4, 4), discriminator_channels=(4, 4, 8, 8),
                                upsampling=upsampling, periodic=periodic).eval()
        images, rolled = gan(z.reshape(2, 16)), gan(z.roll(1, dims=2).reshape(2, 16))
        error = (images.roll(32, dims=3) - rolled).abs().max().item()
        assert (error < 1e-6) == periodic, (periodic, error)
        convs = [m for m in gan.discriminator.modules() if isinstance(m, torch.nn.Conv2d)][:-1]  # the last: unpadded
        assert all(isinstance(m, PeriodicConv2d) == periodic for m in convs)


def test_a_periodic_convolution_is_torchs_circular_one_forward_and_backward():
    torch.manual_seed(0)
    ours = PeriodicConv2d(3, 4, 4, padding=1, stride=2).double()
    torchs = torch.nn.Conv2d(3, 4, 4, padding=1, stride=2, padding_mode="circular").double()
    torchs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 8, 10, dtype=torch.double, requires_grad=True)
    weights = torch.randn(2, 4, 4, 5, dtype=torch.double)
    a, b = ours(x), torchs(x)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.autograd.grad((a * weights).sum(), x), torch.autograd.grad((b * weights).sum(), x))
    assert torch.autograd.gradcheck(lambda t: ours(t), (x,))


def test_the_moving_average_generator_follows_the_updates_and_draws_the_images():
    gan = MicrostructureGAN(generator_channels=(8, 8, 4, 4), discriminator_channels=(4, 4, 8, 8))
    module = AdversarialTraining(gan, ema=0.9)
    before = [p.detach().clone() for p in module.generator_ema.parameters()]
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.add_(1.0)  # as if an optimiser step had moved every weight by 1
    module.update_ema()
    moved = [(p - b) for p, b in zip(module.generator_ema.parameters(), before)]
    assert all(torch.allclose(m, torch.full_like(m, 0.1)) for m in moved)
    assert not any(p.requires_grad for p in module.generator_ema.parameters())
    module.measure_ema_statistics()  # plain averages over fixed latents: the same twice
    first = [b.clone() for b in module.generator_ema.buffers()]
    module.measure_ema_statistics()
    assert all(torch.equal(a, b) for a, b in zip(first, module.generator_ema.buffers()))
    module.eval()
    z = torch.randn(3, 16)
    assert torch.equal(module(z), module.generator_ema(z)) and not torch.equal(module(z), gan.generator(z))
    assert AdversarialTraining(gan).generator_ema is None
    with pytest.raises(ValueError, match="decay"):
        AdversarialTraining(gan, ema=1.0)


def test_gaussian_random_images_are_seeded_at_their_fraction_and_follow_their_axis_lengths():
    a = gaussian_random_images([1, 2, 3], size=64)
    b = gaussian_random_images([3], size=64)
    assert a["images"].dtype == torch.uint8 and a["images"].shape == (3, 64, 64)
    assert torch.equal(a["images"][2], b["images"][0])  # an image depends on its own seed only
    assert ((a["volume_fraction"] >= 0.3) & (a["volume_fraction"] <= 0.7)).all()
    # a field much longer along x1 than x2 changes phase less often along x1
    long_x1 = gaussian_random_images([7], size=64, correlation_length=(8.0, 8.0))["images"].double()
    assert long_x1.diff(dim=1).abs().mean() < 0.2


def test_identical_image_sets_have_no_descriptor_error_and_different_or_collapsed_ones_do():
    images = gaussian_random_images(range(8), size=32)["images"][:, None].float()
    finer = gaussian_random_images(range(8), size=32, correlation_length=(1.0, 1.5))["images"][:, None].float()
    real, same, other, collapsed = (DescriptorSets(8) for _ in range(4))
    real.update(images), same.update(images), other.update(finer)
    collapsed.update(images[:1].expand(8, -1, -1, -1))  # one of the real images, drawn every time
    assert all(v == 0 for v in same.distances(real).values())
    errors = other.distances(real)
    assert errors["two_point_error"] > 0.02 and errors["lineal_path_error"] > 0.02  # shorter correlations
    spread = collapsed.distances(real)
    assert spread["volume_fraction_error"] > 0.02 and spread["two_point_error"] > 0.01  # no diversity


@pytest.mark.parametrize("axis, layers", [(0, "in_plane"), (1, "normal")])
def test_a_striped_image_as_a_columnar_element_is_the_exact_laminate(axis, layers):
    """Stripes constant along x1 put x1 in the layers; stripes across x1 put the layers normal to it."""
    from cli.design import columnar_c11

    stripes = (torch.arange(16) < 8).double()
    image = stripes[None, :].expand(16, 16) if axis == 0 else stripes[:, None].expand(16, 16)
    material = TwoPhaseElasticity(contrast=10)
    got = columnar_c11(image[None], material)[0]
    assert got == pytest.approx(float(laminate_c11(0.5, material, layers)), rel=1e-4)


def test_a_latent_scored_before_is_not_scored_again():
    import optuna

    from cli.design import score_of_earlier_trial

    study = optuna.create_study(direction="maximize")
    space = {f"z{i}": optuna.distributions.FloatDistribution(-2, 2) for i in range(3)}
    study.add_trial(optuna.trial.create_trial(params={"z0": 2.0, "z1": -2.0, "z2": 0.5}, distributions=space, value=61.5))
    assert score_of_earlier_trial(study, [2.0, -2.0, 0.5]) == 61.5
    assert score_of_earlier_trial(study, [2.0, -2.0, 0.4]) is None


@pytest.mark.slow
def test_train_the_gan_then_design_in_its_latent_space(tmp_path):
    """A seconds-long GAN run logs its samples and descriptor errors; `make design` compares Bayesian
    optimisation with random GAN samples and random fields, resumes its studies, and refuses a wrong checkpoint."""
    import mlflow

    (tmp_path / "mlruns").mkdir()
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env = {"MLFLOW_TRACKING_URI": uri}
    out = run_module("cli.train", [*task_configs("microstructure_gan", overlays=("smoke",)),
                                   "--data.init_args.n_images=300", "--model.init_args.ema=0.99",
                                   "--model.init_args.net.init_args.periodic=true"], tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    run = mlflow.search_runs(experiment_names=["microstructure_gan"]).iloc[0]
    assert run["status"] == "FINISHED" and run["metrics.test/descriptor_error"] > 0
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "plots")}
    assert {"plots/samples-epoch000.png", "plots/descriptors.png", "plots/samples-test.png"} <= plots

    ckpt = next(run_checkpoints(tmp_path, "microstructure_gan")[-1].glob("best*.ckpt"))
    design = ["--ckpt", str(ckpt), "--trials", "4", "--seeds", "2", "--sampler", "tpe"]
    out = run_module("cli.design", design, tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| Bayesian optimisation |" in out.stderr and "| random GAN samples |" in out.stderr
    runs = mlflow.search_runs(experiment_names=["microstructure_design"])
    assert len(runs) == 1 and runs.iloc[0]["metrics.solver_calls"] == 3 * 4 * 2
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.iloc[0].run_id, "plots")}
    assert artifacts == {"plots/best_so_far.png", "plots/best_designs.png"}
    best = runs.iloc[0]["metrics.bayesian_optimisation/best_mean"]
    assert 0 < best <= float(voigt_c11(0.5, TwoPhaseElasticity(contrast=10)))  # the rigorous upper bound

    again = run_module("cli.design", design, tmp_path, env=env)  # the studies are finished: no new trial
    assert again.returncode == 0, again.stderr[-3000:]
    runs = mlflow.search_runs(experiment_names=["microstructure_design"])
    latest = runs.sort_values("start_time").iloc[-1]
    assert latest["metrics.solver_calls"] == 2 * 4 * 2  # the random arms again; the optimisation resumed, done
    np.testing.assert_allclose(latest["metrics.bayesian_optimisation/best_mean"], best)

    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {}}, wrong)
    out = run_module("cli.design", ["--ckpt", str(wrong)], tmp_path, env=env)
    assert out.returncode == 2 and "is not a microstructure_gan checkpoint" in out.stderr
    assert "Traceback" not in out.stderr
