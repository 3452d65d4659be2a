"""``make design CKPT=<GAN checkpoint> [TARGET=c11] [TRIALS=60] [SEEDS=3]``: microstructure design in a GAN's
latent space (Yang, Li et al. 2018; review 000).

Bayesian optimisation (Optuna: Gaussian-process sampler, or TPE) over the 16 latent numbers of a trained
``microstructure_gan``; every candidate image is decoded to phases at exactly ``--volume_fraction`` (so only the
arrangement can win) and scored by the FFT elasticity solver as a periodic columnar element (the 2-D image
extruded along x3). Beside it, with the same number of evaluations and the same seed: the best of random GAN
samples and the best of fresh Gaussian-random-field images (the training distribution), as the paper compares.
Each seed is an Optuna study in ``mlruns/optuna.db`` (rerunning the command resumes it), all in one MLflow run
(experiment ``microstructure_design``) with the table, the best-so-far curves and the best designs as images.
The reference ceiling is the exact laminate with x1 in its layers (:func:`materials.bounds.laminate_c11`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from materials.bounds import laminate_c11, voigt_c11
from materials.elasticity import TwoPhaseElasticity, effective_c11
from materials.microstructure import gaussian_random_images
from materials.reconstruction import exact_fraction


class DesignError(RuntimeError):
    """A design that cannot start, said in one line."""


def columnar_c11(images: torch.Tensor, material: TwoPhaseElasticity) -> np.ndarray:
    """C1111 (GPa) of 2-D two-phase images (n, S, S) as periodic columnar elements (extruded along x3)."""
    c11, _ = effective_c11(images[..., None].double(), material, tol=1e-5)
    return c11.cpu().numpy()


#: ``--target`` → (what is maximised, its unit)
TARGETS = {"c11": ("C1111 of the columnar element under uniaxial strain along x1", "GPa")}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="latest", help="a microstructure_gan checkpoint (latest: the task's latest run)")
    ap.add_argument("--target", default="c11", choices=sorted(TARGETS))
    ap.add_argument("--trials", type=int, default=60, help="evaluations per method and seed")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--volume_fraction", type=float, default=0.5, help="every design is decoded to exactly this")
    ap.add_argument("--contrast", type=float, default=10.0, help="E_hard / E_soft (E_hard = 120 GPa, ν = 0.3)")
    ap.add_argument("--sampler", default="gp", choices=["gp", "tpe"])
    ap.add_argument("--bound", type=float, default=2.0,
                    help="each latent number is searched in [-bound, bound] (the GAN was trained on N(0, 1) draws)")
    ap.add_argument("--storage", default="sqlite:///mlruns/optuna.db")
    ap.add_argument("--experiment", default="microstructure_design")
    args = ap.parse_args(argv)
    if not 0 < args.volume_fraction < 1:
        ap.error(f"--volume_fraction must lie in (0, 1), got {args.volume_fraction}")
    if args.trials < 2 or args.seeds < 1:
        ap.error(f"need --trials >= 2 and --seeds >= 1, got {args.trials} and {args.seeds}")
    return args


def load_gan(spec: str):
    from cli.runs import NoRunError, model_checkpoint
    from lightning_modules.gan import AdversarialTraining

    try:
        ckpt = model_checkpoint(spec, "microstructure_gan")
    except NoRunError as err:
        raise DesignError(f"{err}; train one with `make train TASK=microstructure_gan`") from err
    if not ckpt.exists():
        raise DesignError(f"checkpoint {ckpt} does not exist; train one with `make train TASK=microstructure_gan`")
    try:
        gan = AdversarialTraining.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    except (KeyError, TypeError, RuntimeError) as err:
        raise DesignError(f"{ckpt} is not a microstructure_gan checkpoint ({type(err).__name__}: {err})") from err
    return ckpt, gan.eval()


class Evaluator:
    """Scores images: decoded to the volume fraction, then the solver; counts the evaluations and their time."""

    def __init__(self, gan, material: TwoPhaseElasticity, volume_fraction: float):
        self.gan, self.material, self.fraction = gan, material, volume_fraction
        self.size = gan.net.generator(torch.zeros(1, gan.net.latent_dim)).shape[-1]  # the image side
        self.calls, self.seconds = 0, 0.0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fields = self.gan(z.float()).float()[:, 0]
        return torch.stack([exact_fraction(f, self.fraction) for f in fields])

    def score(self, images: torch.Tensor) -> np.ndarray:
        start = time.perf_counter()
        values = columnar_c11(images, self.material)
        self.calls, self.seconds = self.calls + len(images), self.seconds + time.perf_counter() - start
        return values


def score_of_earlier_trial(study, latent: list[float]) -> float | None:
    """The score of a finished trial of ``study`` at exactly this latent vector (``z0``, ``z1``, … in order), so the
    solver never scores the same latent twice; None where there is none."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if [trial.params.get(f"z{i}") for i in range(len(latent))] == latent:
            return trial.value
    return None


def optimise(evaluator: Evaluator, args, seed: int):
    """One seed's Bayesian optimisation over the latent vector (resumed from its study when it exists)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    dim = evaluator.gan.net.latent_dim
    sampler = (optuna.samplers.GPSampler(seed=seed, deterministic_objective=True) if args.sampler == "gp"
               else optuna.samplers.TPESampler(seed=seed))
    study_name = f"design-{args.tag}-{args.sampler}-t{args.trials}-bound{args.bound:g}-seed{seed}"
    study = optuna.create_study(study_name=study_name, storage=args.storage, sampler=sampler, direction="maximize",
                                load_if_exists=True)

    def objective(trial):
        latent = [trial.suggest_float(f"z{i}", -args.bound, args.bound) for i in range(dim)]
        earlier = score_of_earlier_trial(study, latent)  # a sampler may propose a latent again (at the bounds)
        return earlier if earlier is not None else float(evaluator.score(evaluator.decode(torch.tensor([latent])))[0])

    done = len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    if done < args.trials:
        study.optimize(objective, n_trials=args.trials - done)
    values = np.array([t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])[:args.trials]
    best = torch.tensor([[study.best_params[f"z{i}"] for i in range(dim)]])
    return values, evaluator.decode(best)[0]


def random_gan(evaluator: Evaluator, args, seed: int):
    z = torch.randn(args.trials, evaluator.gan.net.latent_dim, generator=torch.Generator().manual_seed(seed))
    images = evaluator.decode(z)
    values = np.concatenate([evaluator.score(part) for part in images.split(8)])
    return values, images[int(values.argmax())]


def random_fields(evaluator: Evaluator, args, seed: int):
    rng = np.random.default_rng(10_000 + seed)
    # thresholded at the design's fraction from their continuous fields: forcing a binary image of another
    # fraction to it would flip whole rows of tied pixels (stripes along x1, the stiff direction)
    fraction = (args.volume_fraction, args.volume_fraction)
    images = gaussian_random_images(rng.integers(0, 2**62, args.trials), evaluator.size, fraction)["images"].double()
    values = np.concatenate([evaluator.score(part) for part in images.split(8)])
    return values, images[int(values.argmax())]


METHODS = {"random fields": random_fields, "random GAN samples": random_gan, "Bayesian optimisation": optimise}


def design(args) -> dict:
    import mlflow

    from callbacks.mlflow_run import experiment_id

    ckpt, gan = load_gan(args.ckpt)
    material = TwoPhaseElasticity(contrast=args.contrast)
    evaluator = Evaluator(gan, material, args.volume_fraction)
    ceiling = float(laminate_c11(args.volume_fraction, material, "in_plane"))
    voigt = float(voigt_c11(args.volume_fraction, material))
    Path(args.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(), args.experiment))
    args.tag = f"{ckpt.parent.parent.name or ckpt.stem}-{args.target}-vf{args.volume_fraction}-c{args.contrast:g}"
    curves: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    bests: dict[str, list[torch.Tensor]] = {m: [] for m in METHODS}
    with mlflow.start_run(run_name=f"design-{args.tag}") as run:
        mlflow.log_params({**vars(args), "checkpoint": str(ckpt), "laminate_c11": ceiling, "voigt_c11": voigt})
        for seed in range(args.seeds):
            for method, run_method in METHODS.items():
                start = time.perf_counter()
                values, best = run_method(evaluator, args, seed)
                curves[method].append(np.maximum.accumulate(values))
                bests[method].append(best)
                print(f"seed {seed}, {method}: best {values.max():.2f} GPa of {len(values)} "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        table, summary = summarise(curves, ceiling, voigt, args)
        print(table, file=sys.stderr)
        mlflow.log_text(table, "design.md")
        mlflow.log_metrics({**summary, "solver_calls": evaluator.calls,
                            "solver_seconds_per_element": evaluator.seconds / max(evaluator.calls, 1)})
        with tempfile.TemporaryDirectory() as tmp:
            for path in (curve_plot(curves, ceiling, Path(tmp) / "best_so_far.png"),
                         design_grid(bests, Path(tmp) / "best_designs.png")):
                mlflow.log_artifact(str(path), "plots")
        print(f"design run {run.info.run_id} (experiment {args.experiment}): table design.md, plots "
              "best_so_far.png and best_designs.png; `make ui` to see them", file=sys.stderr)
    return {"summary": summary, "curves": curves, "bests": bests, "run_id": run.info.run_id}


def summarise(curves, ceiling: float, voigt: float, args) -> tuple[str, dict[str, float]]:
    reference = np.array([c[-1] for c in curves["random fields"]])
    lines = [f"# Design: maximise {TARGETS[args.target][0]}, volume fraction {args.volume_fraction}, contrast "
             f"{args.contrast:g}; {args.trials} evaluations per method, {args.seeds} seeds\n",
             f"Reference: the exact laminate with x1 in its layers (stripes along x1) {ceiling:.2f} GPa; Voigt bound "
             f"{voigt:.2f} GPa.\n",
             "| method | best C11 (GPa), mean ± std over seeds | better than random fields by | of the laminate |",
             "|---|---|---|---|"]
    summary = {}
    for method, seeds in curves.items():
        best = np.array([c[-1] for c in seeds])
        gain = (best / reference - 1) * 100
        key = method.replace(" ", "_").lower()
        summary.update({f"{key}/best_mean": float(best.mean()), f"{key}/gain_pct": float(gain.mean())})
        lines.append(f"| {method} | {best.mean():.2f} ± {best.std():.2f} | {gain.mean():+.1f} % | "
                     f"{100 * best.mean() / ceiling:.1f} % |")
    return "\n".join(lines) + "\n", summary


def curve_plot(curves, ceiling: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method, seeds in curves.items():
        values = np.stack(seeds)
        n = np.arange(1, values.shape[1] + 1)
        ax.plot(n, values.mean(0), label=method)
        ax.fill_between(n, values.min(0), values.max(0), alpha=0.2)
    ax.axhline(ceiling, color="k", ls="--", lw=1, label="in-plane laminate")
    ax.set(xlabel="evaluations", ylabel="best C11 so far (GPa)", title="design: best so far (mean, range over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def design_grid(bests, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(bests)
    cols = len(bests[methods[0]])
    fig, axes = plt.subplots(len(methods), cols, figsize=(2 * cols, 2 * len(methods)), squeeze=False)
    for row, method in enumerate(methods):
        for col, image in enumerate(bests[method]):
            axes[row, col].imshow(image.cpu(), cmap="gray", vmin=0, vmax=1)
            axes[row, col].set_axis_off()
            axes[row, col].set_title(f"{method}, seed {col}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    return design(parse_args(argv))


if __name__ == "__main__":
    try:
        main()
    except DesignError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
