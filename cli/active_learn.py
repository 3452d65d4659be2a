"""``make active-learn TASK=… [ROUNDS=5] [BATCH=1000] [INITIAL=1000] [ACQ=std|cluster|typical|lcmd|random]``:
active learning.

The pool is the task's training split with its labels hidden. Round 0 trains on ``INITIAL`` rows drawn at random
(seeded); after each round the model scores the rows not yet labelled and the next round adds ``BATCH`` of them:
the ones it is least sure of (``std``: the largest predictive standard deviation; the model needs
``--model.init_args.uncertainty=ensemble`` or ``mc_dropout``), the least sure one of each of ``BATCH`` k-means
clusters of the unlabelled compositions (``cluster``: uncertain, but spread over the pool's chemistry as densely as
the pool is, where ``std`` alone piles up on the pool's outliers), the most typical composition of each of the
largest clusters that hold no labels yet (``typical``: the pool's chemistry covered, no σ needed; see
:mod:`lightning_modules.acquisition`), again and again the farthest row of the cluster of the pool, around the
labelled rows and those taken, with the largest sum of squared distances in the net's last hidden layer
(``lcmd``: spread where the labels stand for the pool worst, in the model's own representation), or random ones
(``random``: the baseline), and
trains again, warm-started from the previous round's best checkpoint. Validation and test are
the task's own splits, so the rounds' test MAEs form a learning curve against labels.

One MLflow parent run (experiment of the task), a nested run per round (tags ``al.round``, ``al.labelled``);
the parent gets ``al/test_mae`` against the number of labels and ``plots/learning_curve.png``. Each round's
labelled positions (``labelled.npy``) live in the round's folder; running the same command again resumes (or,
when every round finished, reports them): finished rounds are kept, an interrupted one continues from its last
checkpoint. No row is acquired twice.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import torch

from callbacks.mlflow_run import experiment_id
from cli.runs import OUTPUTS
from cli.train import build
from lightning_modules.acquisition import (largest_cluster_maximum_distance, last_hidden,
                                           most_typical_of_uncovered_clusters, most_uncertain_per_cluster)


ACQUISITIONS = ("std", "cluster", "typical", "lcmd", "random")
NEEDS_STD = ("std", "cluster")


class ActiveLearning:
    def __init__(self, task: str, rounds: int, batch: int, initial: int, acquisition: str, seed: int, args: list[str]):
        if rounds < 1 or batch < 1 or initial < 2:
            raise SystemExit(f"ROUNDS ≥ 1, BATCH ≥ 1 and INITIAL ≥ 2 are needed, not {rounds}, {batch}, "
                             f"{initial}")
        self.task, self.rounds, self.batch, self.initial, self.acquisition, self.seed = (
            task, rounds, batch, initial, acquisition, seed)
        self.args = [*args, f"--seed_everything={seed}"]  # the task's configs (make passes them) and options
        probe = build(self.args)  # validates the options and finds the pool before any round runs
        if acquisition in NEEDS_STD and probe.model.hparams.get("uncertainty", "none") == "none":
            raise SystemExit(f"ACQ={acquisition} needs a predictive standard deviation: add "
                             "ARGS='--model.init_args.uncertainty=ensemble' (or mc_dropout for nets with dropout)")
        probe.datamodule.setup("fit")
        self.pool = probe.datamodule.compositions["train"][0]  # element fractions, in training-split order
        self.pool_features: torch.Tensor | None = None  # unscaled model inputs, made at the first acquisition
        if initial + batch * (rounds - 1) > len(self.pool):
            raise SystemExit(f"INITIAL + BATCH × (ROUNDS − 1) = {initial + batch * (rounds - 1)} rows, the pool has "
                             f"{len(self.pool)}")
        logger_args = probe.config.trainer.logger.init_args
        self.client = mlflow.MlflowClient(logger_args.tracking_uri)
        self.experiment_id = experiment_id(self.client, logger_args.experiment_name)
        options = [task, str(rounds), str(batch), str(initial), acquisition, str(seed), *args]
        self.key = hashlib.sha256("\0".join(options).encode()).hexdigest()[:16]
        self.parent_id = self._parent()
        self.root = OUTPUTS / task / f"al-{acquisition}-{self.key}" / self.parent_id[:12]

    def _parent(self) -> str:
        for run in self.client.search_runs([self.experiment_id], f"tags.`al.key` = '{self.key}'",
                                           order_by=["attributes.start_time DESC"], max_results=1):
            if run.info.status != "FINISHED":
                self.client.update_run(run.info.run_id, status="RUNNING")
                print(f"resuming active-learning run {run.info.run_id}")
            return run.info.run_id  # the same options again: the same rounds, finished ones kept
        run = self.client.create_run(self.experiment_id, run_name=f"{self.task}-al-{self.acquisition}-seed{self.seed}",
                                     tags={"al.key": self.key, "al.task": self.task,
                                           "al.acquisition": self.acquisition})
        for key, value in {"rounds": self.rounds, "batch": self.batch, "initial": self.initial,
                           "acquisition": self.acquisition, "seed": self.seed}.items():
            self.client.log_param(run.info.run_id, key, value)
        return run.info.run_id

    def _round_run(self, k: int):
        runs = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}' "
                                       f"and tags.`al.round` = '{k}'")
        return runs[0] if runs else None

    def training_seconds(self) -> float:
        """The rounds' training seconds (``time/training_s``; a resumed round: its last piece), summed."""
        runs = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}'")
        return sum(r.data.metrics.get("time/training_s", 0.0) for r in runs)

    def labelled(self, k: int) -> np.ndarray:
        """Round k's labelled positions in the pool: written once, before the round trains."""
        path = self.root / f"round{k}" / "labelled.npy"
        if path.exists():
            return np.load(path)
        if k == 0:
            rows = np.sort(np.random.default_rng(self.seed).permutation(len(self.pool))[:self.initial])
        else:
            before = self.labelled(k - 1)
            rows = np.sort(np.concatenate([before, self.acquire(k - 1, before)]))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".part.npy"), rows)
        path.with_suffix(".part.npy").replace(path)
        return rows

    def acquire(self, k: int, labelled: np.ndarray) -> np.ndarray:
        """The ``batch`` pool positions round k's model acquires (never one already labelled)."""
        unlabelled = np.setdiff1d(np.arange(len(self.pool)), labelled)
        if self.acquisition == "random":
            return np.random.default_rng([self.seed, k]).choice(unlabelled, self.batch, replace=False)
        if self.acquisition == "typical":
            return most_typical_of_uncovered_clusters(self.pool, labelled, self.batch, [self.seed, k])
        from datamodules.composition import featurize
        from lightning_modules.composition_model import load_composition_model

        module, data = load_composition_model(self.best_checkpoint(k))  # with round k's feature scaling
        if self.pool_features is None:
            self.pool_features = torch.from_numpy(featurize(self.pool, data.hparams.features).astype(np.float32))
        x = data.transform(self.pool_features[torch.from_numpy(unlabelled)])
        if self.acquisition == "lcmd":
            train = data.transform(self.pool_features[torch.from_numpy(labelled)])
            return unlabelled[largest_cluster_maximum_distance(last_hidden(module, x), last_hidden(module, train),
                                                               self.batch)]
        with torch.no_grad():
            std = torch.cat([module.predict_with_std(chunk)[1] for chunk in x.split(8192)]).flatten().numpy()
        if self.acquisition == "cluster":
            return unlabelled[most_uncertain_per_cluster(self.pool[unlabelled], std, self.batch, [self.seed, k])]
        return unlabelled[np.argsort(-std, kind="stable")[:self.batch]]

    def best_checkpoint(self, k: int) -> str:
        found = sorted((self.root / f"round{k}" / "checkpoints").glob("best-*.ckpt"))
        if not found:
            raise SystemExit(f"round {k} left no best checkpoint in {self.root / f'round{k}'}")
        return str(found[-1])

    def run_round(self, k: int) -> float:
        labelled = self.labelled(k)
        run = self._round_run(k)
        if run is not None and run.info.status == "FINISHED" and "test/mae" in run.data.metrics:
            print(f"round {k}: finished earlier, {len(labelled)} labels, test MAE {run.data.metrics['test/mae']:.4f}")
            return run.data.metrics["test/mae"]
        if run is None:
            run = self.client.create_run(self.experiment_id, run_name=f"{self.task}-al-round{k}", tags={
                "mlflow.parentRunId": self.parent_id, "al.round": str(k), "al.labelled": str(len(labelled))})
        folder = self.root / f"round{k}"
        args = self.args + [f"--data.init_args.train_subset={folder / 'labelled.npy'}",
                            f"--trainer.logger.init_args.run_id={run.info.run_id}",
                            f"--trainer.default_root_dir={folder}"]
        if k > 0:  # warm start from the previous round's model
            args.append(f"--model.init_args.init_from={self.best_checkpoint(k - 1)}")
        if (folder / "checkpoints" / "last.ckpt").exists():
            args += ["--ckpt_path", "last"]
        from cli.train import main, rerun_resumes

        main(args, resume_with=rerun_resumes("make active-learn", "finished rounds"))
        mae = self.client.get_run(run.info.run_id).data.metrics["test/mae"]
        self.client.log_metric(self.parent_id, "al/test_mae", mae, step=len(labelled))
        return mae

    def run(self) -> list[tuple[int, float]]:
        try:
            curve = [(len(self.labelled(k)), self.run_round(k)) for k in range(self.rounds)]
        except BaseException:
            self.client.set_terminated(self.parent_id, "KILLED")
            raise
        self._plot(curve)
        self.client.set_terminated(self.parent_id, "FINISHED")
        print(f"active learning ({self.acquisition}): " + ", ".join(f"{n} labels {m:.4f}" for n, m in curve)
              + f"; parent run {self.parent_id}")
        return curve

    def _plot(self, curve: list[tuple[int, float]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(*zip(*curve), "o-", label=self.acquisition)
        ax.set(xlabel="labelled training rows", ylabel="test MAE", title=f"{self.task}: active learning")
        ax.legend()
        fig.tight_layout()
        with tempfile.TemporaryDirectory() as tmp:
            fig.savefig(Path(tmp) / "learning_curve.png", dpi=110)
            self.client.log_artifact(self.parent_id, str(Path(tmp) / "learning_curve.png"), "plots")
        plt.close(fig)


def main(argv: list[str] | None = None) -> list[tuple[int, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1000, help="rows acquired per round")
    ap.add_argument("--initial", type=int, default=1000, help="random rows labelled before the first round")
    ap.add_argument("--acquisition", choices=ACQUISITIONS, default="std")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("args", nargs=argparse.REMAINDER, help="after --: the task's configs and options for every "
                    "round's training (make passes them)")
    opts = ap.parse_args(argv)
    extra = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    return ActiveLearning(opts.task, opts.rounds, opts.batch, opts.initial, opts.acquisition, opts.seed, extra).run()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
