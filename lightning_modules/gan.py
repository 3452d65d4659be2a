"""Adversarial training of a microstructure GAN (Yang, Li et al. 2018), judged by the descriptors.

Each training step updates the discriminator on a batch of training images and as many generated ones, then
the generator to make the discriminator call its images real (the non-saturating loss). A GAN's losses say
little about its images, so validation and test compare what matters for microstructures: generated images
(decoded to phases at 0.5) against as many held-out real ones, per image, by their radial two-point
correlation, lineal-path function and volume fraction. Each is compared as a distribution over the images, the
Wasserstein-1 distance at every distance r averaged over r, so a generator that draws one average texture
(mode collapse) scores badly even when its mean curve is right. ``val/descriptor_error`` (the two-point plus
the lineal-path distance) picks the best checkpoint.

With ``ema`` > 0 the images are drawn (validation, test, ``make design``) by an exponential moving average of the
generator's weights (Yazıcı et al., ICLR 2019), its batch-normalisation statistics measured afresh on random
latent vectors before each use: the average of the last few hundred updates, not the last update's swing.
"""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from lightning_modules.batchnorm import recompute_batchnorm_statistics
from materials.descriptors import lineal_path, radial_two_point


def wasserstein_1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """W1 between the empirical distributions of equally many samples along axis 0, per column: mean |sorted a −
    sorted b|."""
    return (a.sort(dim=0).values - b.sort(dim=0).values).abs().mean(dim=0)


class DescriptorSets:
    """Per image: the radial two-point and lineal-path functions (up to ``max_r`` pixels) and the volume fraction."""

    def __init__(self, max_r: int):
        self.max_r = max_r
        self.reset()

    def reset(self) -> None:
        self.s2, self.lp, self.vf = [], [], []

    def update(self, images: torch.Tensor) -> None:
        x = images[:, 0].double()
        self.s2.append(radial_two_point(x, self.max_r).cpu())
        self.lp.append(lineal_path(x, self.max_r).cpu())
        self.vf.append(x.mean(dim=(1, 2)).cpu()[:, None])

    @property
    def n(self) -> int:
        return sum(len(v) for v in self.vf)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.cat(self.s2), torch.cat(self.lp), torch.cat(self.vf)

    def distances(self, other: "DescriptorSets") -> dict[str, torch.Tensor]:
        """Mean over r of W1 between the two sets' values at r (and W1 of the volume fractions)."""
        names = ("two_point_error", "lineal_path_error", "volume_fraction_error")
        return {name: wasserstein_1(a, b).mean() for name, a, b in zip(names, self.tensors(), other.tensors())}


class AdversarialTraining(pl.LightningModule):
    """Train an injected :class:`lightning_modules.nets.MicrostructureGAN`.

    Args:
        net: the generator and discriminator. lr, betas: Adam's, for both (DCGAN's 2e-4 and (0.5, 0.999)).
        max_r: the longest distance (pixels) at which the descriptors are compared.
        ema: decay of the moving average of the generator's weights that draws the images (0.999: about the last
            1,000 updates; 0: the generator as trained).
        ema_bn_batches: batches of 64 random latent vectors its batch-normalisation statistics are measured on.
        channels_last: keep the nets' weights and the images channels-last (NHWC). Measured on 2 AVX2 cores,
            batch 64: a training step 3.56 → 2.10 s with zero padding, but no gain with periodic padding (2.6–2.8
            against 2.5–2.6 s), so it is off by default.
    """

    best_metric = "val/descriptor_error"

    def __init__(self, net: nn.Module, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), max_r: int = 32,
                 ema: float = 0.0, ema_bn_batches: int = 16, channels_last: bool = False):
        super().__init__()
        if not 0 <= ema < 1:
            raise ValueError(f"ema must be a decay in [0, 1), got {ema}")
        self.save_hyperparameters()  # the net too: load_from_checkpoint rebuilds it (make design)
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.generator_ema = copy.deepcopy(net.generator).requires_grad_(False) if ema else None
        self.automatic_optimization = False
        self.real_sets, self.fake_sets = DescriptorSets(max_r), DescriptorSets(max_r)

    @property
    def drawing_generator(self) -> nn.Module:
        """The generator that draws images: the moving average where there is one."""
        return self.net.generator if self.generator_ema is None else self.generator_ema

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.drawing_generator(z)

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.net.latent_dim, generator=generator).to(self.device)

    def training_step(self, batch, batch_idx):
        real = batch[0].float()
        if self.hparams.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        opt_g, opt_d = self.optimizers()
        fake = self.net.generator(self.latent(len(real)))
        d_real, d_fake = self.net.discriminator(real), self.net.discriminator(fake.detach())
        d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        d_on_fake = self.net.discriminator(fake)
        g_loss = bce(d_on_fake, torch.ones_like(d_on_fake))  # non-saturating: make D call the fakes real
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()
        self.update_ema()
        self.log_dict({"train/d_loss": d_loss.detach(), "train/g_loss": g_loss.detach(),
                       "train/d_real": torch.sigmoid(d_real.detach().float()).mean(),
                       "train/d_fake": torch.sigmoid(d_fake.detach().float()).mean()},
                      on_step=True, on_epoch=True, prog_bar=False)

    @torch.no_grad()
    def update_ema(self) -> None:
        """Move the moving-average generator's weights 1 − ema of the way to the generator's (after each update)."""
        if self.generator_ema is not None:
            torch._foreach_lerp_(list(self.generator_ema.parameters()), list(self.net.generator.parameters()),
                                 1 - self.hparams.ema)

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0, batch: int = 250) -> torch.Tensor:
        """``n`` images decoded to phases (0/1 float, (n, 1, S, S)) from seeded latent vectors, in eval mode."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.net.latent_dim, generator=g).to(self.device)
        return torch.cat([(self.drawing_generator(part).float() > 0.5).float() for part in z.split(batch)])

    def measure_ema_statistics(self) -> None:
        """The moving-average generator's batch-normalisation statistics, from fixed random latent vectors."""
        g = torch.Generator().manual_seed(0)
        latents = (torch.randn(64, self.net.latent_dim, generator=g).to(self.device)
                   for _ in range(self.hparams.ema_bn_batches))
        recompute_batchnorm_statistics(self.generator_ema, latents, self.generator_ema, self.hparams.ema_bn_batches)

    def on_validation_start(self):
        if self.generator_ema is not None and self.trainer.state.fn == "fit":
            self.measure_ema_statistics()  # saved with the checkpoint after this validation

    def _compare(self, batch, batch_idx):
        real = batch[0].float()
        self.real_sets.update(real)
        self.fake_sets.update(self.generate(len(real), seed=batch_idx))  # the same latents every epoch

    def _log_comparison(self, stage: str) -> dict[str, torch.Tensor]:
        values = {f"{stage}/{k}": v for k, v in self.fake_sets.distances(self.real_sets).items()}
        values[f"{stage}/descriptor_error"] = values[f"{stage}/two_point_error"] + values[f"{stage}/lineal_path_error"]
        values = {k: v.float() for k, v in values.items()}
        self.real_sets.reset(), self.fake_sets.reset()
        self.log_dict(values)
        return values

    def validation_step(self, batch, batch_idx):
        self._compare(batch, batch_idx)

    def on_validation_epoch_end(self):
        if self.real_sets.n:  # none in the sanity check's absence
            self._log_comparison("val")

    def test_step(self, batch, batch_idx):
        self._compare(batch, batch_idx)

    def on_test_epoch_end(self):
        self._log_comparison("test")

    def configure_optimizers(self):
        h = self.hparams
        return (torch.optim.Adam(self.net.generator.parameters(), lr=h.lr, betas=tuple(h.betas)),
                torch.optim.Adam(self.net.discriminator.parameters(), lr=h.lr, betas=tuple(h.betas)))
