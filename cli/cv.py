"""``make cv TASK=… [FOLDS=5] [LEARNER=rf]``: k-fold cross-validation as one MLflow parent run.

Fold k runs the same CLI as ``make train`` (or ``make baseline`` with
``LEARNER=rf``) with ``split: kfold, n_folds: K, fold: k``: the datamodule
deduplicates before it splits, so no structure or composition is on two sides
of any fold. Each fold is an MLflow run nested under one parent run, which
gets ``cv/<metric>_mean`` and ``cv/<metric>_std`` (sample standard deviation
over folds) for every ``test/`` metric all folds logged (regression errors,
classification accuracy and F1, baselines measured in the same folds) and a
Markdown table ``cv_folds.md``; when the folds logged confusion matrices
(``confusion/confusion_matrix.json``), the parent gets their sum. Running the same command
again resumes an unfinished cross-validation: finished folds are kept, an
interrupted fold continues from its last checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import mlflow
import numpy as np

from callbacks.mlflow_run import experiment_id
from cli.runs import OUTPUTS
from cli.train import build

METRICS = ("test/mae", "test/rmse", "test/r2", "test/mae_polymorphs", "test/mae_unique_formula")  # listed first


def metric_names(per_fold: list[dict[str, float]]) -> list[str]:
    """The ``test/`` metrics every fold logged: :data:`METRICS` first, then the others sorted."""
    common = set.intersection(*(set(f) for f in per_fold)) if per_fold else set()
    return [m for m in METRICS if m in common] + sorted(m for m in common if m.startswith("test/") and m not in METRICS)


def fold_args(args: list[str], folds: int, fold: int) -> list[str]:
    return args + ["--data.init_args.split=kfold", f"--data.init_args.n_folds={folds}", f"--data.init_args.fold={fold}"]


class CrossValidation:
    def __init__(self, task: str, folds: int, learner: str, args: list[str]):
        if folds < 2:
            raise SystemExit(f"FOLDS must be at least 2, not {folds}")
        self.task, self.folds, self.learner, self.args = task, folds, learner, args
        from cli.baseline import build_baseline

        parse = build_baseline if learner == "rf" else build
        probe = parse(fold_args(args, folds, 0))  # validates the options before any fold runs
        logger_args = probe.config.trainer.logger.init_args
        self.client = mlflow.MlflowClient(logger_args.tracking_uri)
        self.experiment_id = experiment_id(self.client, logger_args.experiment_name)
        self.key = hashlib.sha256("\0".join([task, learner, str(folds), *args]).encode()).hexdigest()[:16]
        self.parent_id = self._parent()
        # checkpoints of this cross-validation only: another one (other options, or the same options
        # again after this one finished) never resumes from them
        self.root = OUTPUTS / task / f"cv-{learner}-{self.key}" / self.parent_id[:12]

    def _parent(self) -> str:
        unfinished = self.client.search_runs([self.experiment_id], f"tags.`cv.key` = '{self.key}'",
                                             order_by=["attributes.start_time DESC"])
        for run in unfinished:
            if run.info.status != "FINISHED":
                self.client.update_run(run.info.run_id, status="RUNNING")
                print(f"resuming cross-validation run {run.info.run_id}")
                return run.info.run_id
        run = self.client.create_run(self.experiment_id, run_name=f"{self.task}-{self.learner}-cv{self.folds}", tags={
            "cv.key": self.key, "cv.task": self.task, "cv.learner": self.learner, "cv.folds": str(self.folds)})
        self.client.log_param(run.info.run_id, "args", " ".join(self.args)[:6000])
        return run.info.run_id

    def _fold_run(self, fold: int):
        runs = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}' "
                                       f"and tags.`cv.fold` = '{fold}'")
        return runs[0] if runs else None

    def run_fold(self, fold: int) -> dict[str, float]:
        run = self._fold_run(fold)
        tested = metric_names([run.data.metrics]) if run is not None else []
        if run is not None and run.info.status == "FINISHED" and tested:
            print(f"fold {fold}: finished earlier, {tested[0]} {run.data.metrics[tested[0]]:.4f}")
            return run.data.metrics
        if run is None:
            run = self.client.create_run(self.experiment_id, run_name=f"{self.task}-{self.learner}-fold{fold}", tags={
                "mlflow.parentRunId": self.parent_id, "cv.fold": str(fold), "cv.key": f"{self.key}-fold"})
        root = self.root / f"fold{fold}"
        args = fold_args(self.args, self.folds, fold) + [f"--trainer.logger.init_args.run_id={run.info.run_id}",
                                                         f"--trainer.default_root_dir={root}"]
        if self.learner == "rf":
            from cli.baseline import main as baseline

            baseline(args)
        else:
            from cli.train import main, rerun_resumes

            resume = ["--ckpt_path", "last"] if (root / "checkpoints" / "last.ckpt").exists() else []
            main(args + resume, resume_with=rerun_resumes("make cv", "finished folds"))
        return self.client.get_run(run.info.run_id).data.metrics

    def summarise(self, per_fold: list[dict[str, float]]) -> str:
        names = metric_names(per_fold)
        lines = [f"# {self.task} ({self.learner}): {self.folds}-fold cross-validation", "",
                 "| fold | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {k} | " + " | ".join(f"{f[m]:.4f}" for m in names) + " |" for k, f in enumerate(per_fold)]
        summary = {}
        for m in names:
            values = np.array([f[m] for f in per_fold])
            summary[m] = (values.mean(), values.std(ddof=1))
            self.client.log_metric(self.parent_id, f"cv/{m}_mean", float(values.mean()))
            self.client.log_metric(self.parent_id, f"cv/{m}_std", float(values.std(ddof=1)))
        lines.append("| mean ± std | " + " | ".join(f"{a:.4f} ± {b:.4f}" for a, b in summary.values()) + " |")
        text = "\n".join(lines) + "\n"
        self.client.log_text(self.parent_id, text, "cv_folds.md")
        self._pooled_confusion()
        return text

    def _pooled_confusion(self) -> None:
        """Sum the folds' confusion matrices (if they logged any) into the parent run."""
        import json

        from callbacks.confusion_matrix import log_confusion

        children = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}'")
        total, names = None, None
        for run in children:
            if "confusion" not in {a.path for a in self.client.list_artifacts(run.info.run_id)}:
                return
            path = self.client.download_artifacts(run.info.run_id, "confusion/confusion_matrix.json")
            data = json.loads(Path(path).read_text())
            total = np.array(data["matrix"]) + (0 if total is None else total)
            names = data["class_names"]
        if total is not None:
            log_confusion(self.client, self.parent_id, total, names,
                          f"{self.task}: {self.folds}-fold test confusion, summed")

    def run(self) -> str:
        try:
            per_fold = [self.run_fold(k) for k in range(self.folds)]
        except BaseException:
            self.client.set_terminated(self.parent_id, "FAILED")
            raise
        text = self.summarise(per_fold)
        self.client.set_terminated(self.parent_id, "FINISHED")
        return text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--learner", choices=("net", "rf"), default="net")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the task's config options, as for make train")
    opts = parser.parse_args(argv)
    extra = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    text = CrossValidation(opts.task, opts.folds, opts.learner, extra).run()
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
