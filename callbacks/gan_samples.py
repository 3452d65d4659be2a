"""What a microstructure GAN draws, as pictures: a grid of generated images beside held-out real ones after every
validation (``plots/samples-epoch<NNN>.png``), and after testing the two descriptors of both sets
(``plots/descriptors.png``), all in the MLflow run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning.pytorch as pl
import torch

from callbacks.mlflow_run import mlflow_logger
from materials.descriptors import lineal_path, radial_two_point


def sample_grid(real: torch.Tensor, fake: torch.Tensor, path: Path, title: str) -> Path:
    """Real images on the first row, generated ones below (both (n, S, S) 0/1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(real), 8)
    rows = 1 + -(-min(len(fake), 3 * cols) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(cols):
        axes[0, i].imshow(real[i], cmap="gray", vmin=0, vmax=1)
    for i in range(min(len(fake), (rows - 1) * cols)):
        axes[1 + i // cols, i % cols].imshow(fake[i], cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("held-out real", fontsize=8, loc="left")
    axes[1, 0].set_title("generated", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def descriptor_plot(real: torch.Tensor, fake: torch.Tensor, max_r: int, path: Path) -> Path:
    """Mean ± std over images of S2(r) and L(r), real against generated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for images, label in ((real, "held-out real"), (fake, "generated")):
        for ax, values in zip(axes, (radial_two_point(images, max_r), lineal_path(images, max_r))):
            mean, std = values.mean(0), values.std(0)
            r = torch.arange(len(mean))
            ax.plot(r, mean, label=label)
            ax.fill_between(r, mean - std, mean + std, alpha=0.25)
    axes[0].set(xlabel="r (pixels)", ylabel="S2(r)", title="two-point correlation")
    axes[1].set(xlabel="r (pixels)", ylabel="L(r)", title="lineal path")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class GANSamples(pl.Callback):
    """Log sample grids every ``every_n_epochs`` validations and the descriptor plot after testing."""

    def __init__(self, every_n_epochs: int = 1, n_images: int = 16):
        self.every_n_epochs, self.n_images = every_n_epochs, n_images

    def _held_out(self, trainer, split: str, n: int) -> torch.Tensor:
        return trainer.datamodule.splits[split][torch.arange(min(n, len(trainer.datamodule.splits[split])))][0][:, 0]

    def on_validation_epoch_end(self, trainer, pl_module):
        logger = mlflow_logger(trainer)
        if trainer.sanity_checking or logger is None or trainer.global_rank != 0 \
                or trainer.current_epoch % self.every_n_epochs:
            return
        fake = pl_module.generate(self.n_images, seed=12345)[:, 0].cpu()
        with tempfile.TemporaryDirectory() as tmp:
            path = sample_grid(self._held_out(trainer, "val", 8).float(), fake,
                               Path(tmp) / f"samples-epoch{trainer.current_epoch:03d}.png",
                               f"epoch {trainer.current_epoch}")
            logger.experiment.log_artifact(logger.run_id, str(path), "plots")

    def on_test_end(self, trainer, pl_module):
        logger = mlflow_logger(trainer)
        if logger is None or trainer.global_rank != 0:
            return
        real = self._held_out(trainer, "test", 10**9).double()
        fake = pl_module.generate(len(real), seed=0)[:, 0].double().cpu()
        with tempfile.TemporaryDirectory() as tmp:
            for path in (descriptor_plot(real, fake, pl_module.hparams.max_r, Path(tmp) / "descriptors.png"),
                         sample_grid(real.float(), fake.float(), Path(tmp) / "samples-test.png", "test")):
                logger.experiment.log_artifact(logger.run_id, str(path), "plots")
