"""k-fold cross-validation: a parent MLflow run with a nested run per fold, mean ± std, resumable."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from cli.cv import main
from conftest import task_args

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow


def _runs(workdir):
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlruns/mlflow.db")
    return mlflow.search_runs(experiment_names=["flla_2015"])


def test_folds_nest_under_a_parent_and_a_crashed_cv_resumes(workdir, monkeypatch):
    args = task_args("elemnet_flla", "--trainer.max_epochs=2", "--trainer.limit_val_batches=1",
                     "--trainer.callbacks+=crash_callback.CrashOnFoldWhileEnvSet")
    monkeypatch.setenv("MATDL_CRASH_FOLD", "2")
    with pytest.raises(RuntimeError, match="injected crash in fold 2"):
        main(["--task", "elemnet_flla", "--folds", "3", "--", *args])
    runs = _runs(workdir)
    parent = runs[runs["tags.cv.folds"] == "3"]
    assert len(parent) == 1 and parent.iloc[0].status == "FAILED"
    children = runs[runs["tags.mlflow.parentRunId"] == parent.iloc[0].run_id]
    assert sorted(children["tags.cv.fold"]) == ["0", "1", "2"]
    done = children[children.status == "FINISHED"]
    assert sorted(done["tags.cv.fold"]) == ["0", "1"]
    first_fold0 = done[done["tags.cv.fold"] == "0"].iloc[0]

    monkeypatch.delenv("MATDL_CRASH_FOLD")
    text = main(["--task", "elemnet_flla", "--folds", "3", "--", *args])
    runs = _runs(workdir)
    parent = runs[runs["tags.cv.folds"] == "3"]
    assert len(parent) == 1 and parent.iloc[0].status == "FINISHED"  # the same parent, finished
    children = runs[runs["tags.mlflow.parentRunId"] == parent.iloc[0].run_id]
    assert len(children) == 3 and (children.status == "FINISHED").all()
    fold0 = children[children["tags.cv.fold"] == "0"].iloc[0]
    assert fold0["end_time"] == first_fold0["end_time"]  # fold 0 was not run again
    maes = children["metrics.test/mae"].to_numpy()
    assert parent.iloc[0]["metrics.cv/test/mae_mean"] == pytest.approx(maes.mean())
    assert parent.iloc[0]["metrics.cv/test/mae_std"] == pytest.approx(maes.std(ddof=1))
    assert "mean ± std" in text and np.isfinite(maes).all()
    # each fold tested a different third of the same deduplicated rows
    sizes = children["params.data/n_test"].astype(int)
    assert abs(sizes.max() - sizes.min()) <= 1


def test_cross_validations_with_other_options_keep_their_checkpoints_apart(workdir):
    """A fold resumes from its own last checkpoint, never from one that a cross-validation with other options,
    or a finished one with the same options, left."""
    from cli.cv import CrossValidation

    def cv(*extra):
        return CrossValidation("elemnet_flla", 3, "net", task_args("elemnet_flla", *extra))

    first, other, again = cv("--trainer.max_epochs=2"), cv("--trainer.max_epochs=3"), cv("--trainer.max_epochs=2")
    assert first.root != other.root and first.parent_id != other.parent_id
    assert again.root == first.root and again.parent_id == first.parent_id
    first.client.set_terminated(first.parent_id, "FINISHED")  # the same options once more, after it finished:
    after = cv("--trainer.max_epochs=2")                       # a new run that trains afresh
    assert after.parent_id != first.parent_id and after.root != first.root


def test_random_forest_cross_validation(workdir):
    args = task_args("irnet_flla", "--rf.n_estimators=10")
    main(["--task", "irnet_flla", "--folds", "2", "--learner", "rf", "--", *args])
    runs = _runs(workdir)
    parent = runs[runs["tags.cv.learner"] == "rf"]
    assert parent.iloc[0].status == "FINISHED" and np.isfinite(parent.iloc[0]["metrics.cv/test/mae_mean"])
    assert (runs["tags.mlflow.parentRunId"] == parent.iloc[0].run_id).sum() == 2
