"""Adversarial training of a microstructure GAN (Yang, Li et al. 2018), judged by the descriptors.

Each training step updates the discriminator on a batch of training images and as many generated ones, then
the generator to make the discriminator call its images real (the non-saturating loss). A GAN's losses say
little about its images, so validation and test compare what matters for microstructures: generated images
(decoded to phases at 0.5) against the held-out real ones, by the mean absolute difference of their average
radial two-point correlation and lineal-path functions (:mod:`materials.descriptors`) and of their volume
fraction. ``val/descriptor_error`` (the sum of the two function errors) picks the best checkpoint.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from materials.descriptors import lineal_path, radial_two_point


class DescriptorSums:
    """Running sums of the radial two-point and lineal-path functions and volume fractions of images."""

    def __init__(self, max_r: int):
        self.max_r = max_r
        self.reset()

    def reset(self) -> None:
        self.n, self.s2, self.lp, self.vf = 0, 0.0, 0.0, 0.0

    def update(self, images: torch.Tensor) -> None:
        x = images[:, 0].double()
        self.n += len(x)
        self.s2 = self.s2 + radial_two_point(x, self.max_r).sum(0)
        self.lp = self.lp + lineal_path(x, self.max_r).sum(0)
        self.vf = self.vf + x.mean(dim=(1, 2)).sum()

    def means(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.s2 / self.n, self.lp / self.n, self.vf / self.n


class AdversarialTraining(pl.LightningModule):
    """Train an injected :class:`lightning_modules.nets.MicrostructureGAN`.

    Args:
        net: the generator and discriminator. lr, betas: Adam's, for both (DCGAN's 2e-4 and (0.5, 0.999)).
        max_r: the longest distance (pixels) at which the descriptors are compared.
    """

    best_metric = "val/descriptor_error"

    def __init__(self, net: nn.Module, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), max_r: int = 32):
        super().__init__()
        self.save_hyperparameters()  # the net too: load_from_checkpoint rebuilds it (make design)
        self.net = net
        self.automatic_optimization = False
        self.real_sums, self.fake_sums = DescriptorSums(max_r), DescriptorSums(max_r)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.net.latent_dim, generator=generator).to(self.device)

    def training_step(self, batch, batch_idx):
        real = batch[0].float()
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
        self.log_dict({"train/d_loss": d_loss.detach(), "train/g_loss": g_loss.detach(),
                       "train/d_real": torch.sigmoid(d_real.detach().float()).mean(),
                       "train/d_fake": torch.sigmoid(d_fake.detach().float()).mean()},
                      on_step=True, on_epoch=True, prog_bar=False)

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0, batch: int = 250) -> torch.Tensor:
        """``n`` images decoded to phases (0/1 float, (n, 1, S, S)) from seeded latent vectors, in eval mode."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.net.latent_dim, generator=g).to(self.device)
        return torch.cat([(self.net.generator(part).float() > 0.5).float() for part in z.split(batch)])

    def _compare(self, batch, batch_idx):
        real = batch[0].float()
        self.real_sums.update(real)
        self.fake_sums.update(self.generate(len(real), seed=batch_idx))  # the same latents every epoch

    def _log_comparison(self, stage: str) -> dict[str, torch.Tensor]:
        (s2_r, lp_r, vf_r), (s2_f, lp_f, vf_f) = self.real_sums.means(), self.fake_sums.means()
        values = {f"{stage}/two_point_error": (s2_f - s2_r).abs().mean(),
                  f"{stage}/lineal_path_error": (lp_f - lp_r).abs().mean(),
                  f"{stage}/volume_fraction_error": (vf_f - vf_r).abs()}
        values[f"{stage}/descriptor_error"] = values[f"{stage}/two_point_error"] + values[f"{stage}/lineal_path_error"]
        values = {k: v.float() for k, v in values.items()}
        self.real_sums.reset(), self.fake_sums.reset()
        self.log_dict(values)
        return values

    def validation_step(self, batch, batch_idx):
        self._compare(batch, batch_idx)

    def on_validation_epoch_end(self):
        if self.real_sums.n:  # none in the sanity check's absence
            self._log_comparison("val")

    def test_step(self, batch, batch_idx):
        self._compare(batch, batch_idx)

    def on_test_epoch_end(self):
        self._log_comparison("test")

    def configure_optimizers(self):
        h = self.hparams
        return (torch.optim.Adam(self.net.generator.parameters(), lr=h.lr, betas=tuple(h.betas)),
                torch.optim.Adam(self.net.discriminator.parameters(), lr=h.lr, betas=tuple(h.betas)))
