"""Active learning: rounds that add the most uncertain rows, never one twice, warm-started, resumable."""

import numpy as np
import pytest

from conftest import task_args

SSUB = ["--data.init_args.dataset=ssub", "--data.init_args.skip_bad_rows=true", "--data.init_args.split=random",
        "--data.init_args.train_fraction=1.0", "--trainer.max_epochs=2"]


@pytest.mark.slow
def test_rounds_acquire_uncertain_rows_once_each_and_resume(workdir, capsys):
    import mlflow

    from cli.active_learn import ActiveLearning, main

    args = task_args("elemnet", *SSUB, "--model.init_args.uncertainty=ensemble", "--model.init_args.ensemble_size=2")
    opts = ["--task", "elemnet", "--rounds", "3", "--batch", "40", "--initial", "60", "--"]
    curve = main([*opts, *args])
    assert [n for n, _ in curve] == [60, 100, 140] and all(0 < mae < 2 for _, mae in curve)
    runs = mlflow.search_runs(experiment_names=["ssub"])
    parent = runs[runs["tags.al.key"].notna()].iloc[0]
    rounds = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
    assert parent.status == "FINISHED" and sorted(rounds["tags.al.round"]) == ["0", "1", "2"]
    assert rounds["params.train_subset"].str.endswith("labelled.npy").all()
    assert sorted(rounds["params.data/train_subsampled_to"].astype(int)) == [60, 100, 140]
    al = ActiveLearning("elemnet", 3, 40, 60, "std", 0, args)
    labelled = [al.labelled(k) for k in range(3)]
    assert all(len(np.unique(rows)) == len(rows) for rows in labelled)  # no row twice
    assert set(labelled[0]) < set(labelled[1]) < set(labelled[2])  # each round keeps the earlier labels
    # the acquired rows are the ones the round's model was least sure of, not random ones
    random_al = ActiveLearning("elemnet", 3, 40, 60, "random", 0, args)
    assert not np.array_equal(random_al.acquire(0, labelled[0]), np.setdiff1d(labelled[1], labelled[0]))
    # the same command again: every round finished earlier, nothing trained again
    capsys.readouterr()
    assert main([*opts, *args]) == curve
    assert capsys.readouterr().out.count("finished earlier") == 3
    with pytest.raises(SystemExit, match="needs a predictive standard deviation"):
        main(["--task", "elemnet", "--rounds", "2", "--batch", "5", "--initial", "10", "--", *task_args("elemnet", *SSUB)])


@pytest.mark.slow
def test_an_interrupted_round_says_to_run_the_same_command_which_continues_it(workdir, capsys, monkeypatch):
    import mlflow

    from cli.active_learn import main

    args = task_args("elemnet", *SSUB, "--trainer.max_epochs=3", "--trainer.limit_train_batches=2",
                     "--trainer.limit_val_batches=1", "--trainer.callbacks+=crash_callback.InterruptWhileEnvSet")
    command = ["--task", "elemnet", "--rounds", "2", "--batch", "20", "--initial", "40", "--acquisition", "random",
               "--", *args]
    monkeypatch.setenv("MATDL_INTERRUPT", "1")
    with pytest.raises(SystemExit) as ended:  # Ctrl-C in round 0, after its first epoch
        main(command)
    assert ended.value.code == 130
    assert "resume: the same make active-learn command" in capsys.readouterr().err
    runs = mlflow.search_runs(experiment_names=["ssub"])
    assert runs[runs["tags.al.key"].notna()].iloc[0].status == "KILLED"
    monkeypatch.delenv("MATDL_INTERRUPT")
    curve = main(command)
    assert [n for n, _ in curve] == [40, 60]
    runs = mlflow.search_runs(experiment_names=["ssub"])
    parent = runs[runs["tags.al.key"].notna()]
    rounds = runs[runs["tags.mlflow.parentRunId"] == parent.iloc[0].run_id]
    assert len(parent) == 1 and parent.iloc[0].status == "FINISHED"
    assert sorted(rounds["tags.al.round"]) == ["0", "1"] and (rounds.status == "FINISHED").all()  # round 0 resumed


def test_labels_to_reach_interpolates_between_rounds():
    from cli.reproduce.active_learning import labels_to_reach

    labels, mae = np.array([100, 200, 300]), np.array([0.5, 0.3, 0.2])
    assert labels_to_reach(labels, mae, 0.4) == pytest.approx(150)
    assert labels_to_reach(labels, mae, 0.6) == 100 and np.isnan(labels_to_reach(labels, mae, 0.1))


@pytest.mark.slow
def test_the_reproduce_table_compares_both_acquisitions_over_seeds(workdir):
    import mlflow

    from cli.reproduce import main

    text = main(["active-learning", "--seeds", "0", "1", "--rounds", "2", "--al-batch", "30", "--initial", "50",
                 "--acquisitions", "std", "cluster", "--",
                 *SSUB, "--trainer.max_epochs=1", "--model.init_args.uncertainty=ensemble",
                 "--model.init_args.ensemble_size=2"])
    assert "| labelled rows | most uncertain (std) | most uncertain per cluster | random |" in text
    assert "| 50 |" in text and "| 80 |" in text
    assert "the `std` arm needed" in text and "the `cluster` arm needed" in text
    assert (workdir / "outputs" / "reproduce" / "active-learning-elemnet.png").exists()
    runs = mlflow.search_runs(experiment_names=["ssub", "reproduce"])
    reproduction = runs[runs["tags.reproduce.table"] == "active-learning"].iloc[0]
    rounds = runs[runs["tags.al.round"].notna() & (runs.start_time > reproduction.start_time)]
    summed = reproduction["metrics.training_seconds"]
    assert len(rounds) == 12 and summed == pytest.approx(rounds["metrics.time/training_s"].sum())  # not only cells'
    assert f"summed: {summed / 60:.1f} min" in text


def test_cluster_acquisition_takes_the_most_uncertain_row_of_each_cluster():
    from lightning_modules.acquisition import most_uncertain_per_cluster

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    features = np.concatenate([c + rng.normal(0, 0.5, (50, 2)) for c in centres])
    std = rng.random(150)
    std[100:] += 1  # the third blob is the most uncertain everywhere: plain std would take only its rows
    picked = most_uncertain_per_cluster(features, std, 3, seed=[0, 1])
    assert np.array_equal(picked, [np.argmax(std[:50]), 50 + np.argmax(std[50:100]), 100 + np.argmax(std[100:])])
    assert set(np.argsort(-std)[:3]) <= set(range(100, 150))
    assert np.array_equal(most_uncertain_per_cluster(features[:2], std[:2], 5, seed=0), [0, 1])


def test_typical_acquisition_takes_the_densest_row_of_each_cluster_without_labels():
    from lightning_modules.acquisition import most_typical_of_uncovered_clusters

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    sizes = [80, 50, 30]
    features = np.concatenate([c + rng.normal(0, 0.5, (n, 2)) for c, n in zip(centres, sizes)])
    blob = np.repeat([0, 1, 2], sizes)
    labelled = np.array([3, 7])  # two rows of the first (largest) blob: it is covered
    picked = most_typical_of_uncovered_clusters(features, labelled, 2, seed=[0, 1], neighbours=10)
    assert sorted(blob[picked]) == [1, 2] and not set(picked) & set(labelled)
    for b, row in zip(blob[picked], picked):  # each the row nearest its 10 nearest neighbours in its blob
        members = np.flatnonzero(blob == b)
        d = np.sort(np.linalg.norm(features[members, None] - features[None, members], axis=-1), axis=1)[:, 1:11]
        assert row == members[np.argmin(d.mean(1))]
    # with no labels yet, one row of each blob
    assert sorted(blob[most_typical_of_uncovered_clusters(features, labelled[:0], 3, seed=0)]) == [0, 1, 2]
    free = np.setdiff1d(np.arange(160), labelled)
    assert np.array_equal(most_typical_of_uncovered_clusters(features, labelled, 200, seed=0), free)


def test_lcmd_takes_the_farthest_row_of_the_cluster_worst_covered():
    import torch

    from lightning_modules.acquisition import largest_cluster_maximum_distance

    # labelled centres at 0 and 10; the pool rows belong to the nearer one
    pool = torch.tensor([[0.5], [1.0], [4.0], [4.5], [9.5], [10.5], [11.0]])
    labelled = torch.tensor([[0.0], [10.0]])
    # squared distances: centre 0's cluster 0.25 + 1 + 16 + 20.25, centre 10's 0.25 + 0.25 + 1: 4.5 goes first;
    # then 4.0 belongs to 4.5 (0.25), centre 0 keeps 0.25 + 1, centre 10 (1.5) is the largest: its 11.0 next
    assert list(largest_cluster_maximum_distance(pool, labelled, 1)) == [3]
    assert list(largest_cluster_maximum_distance(pool, labelled, 2)) == [3, 6]
    picked = largest_cluster_maximum_distance(pool, labelled, 7)
    assert list(picked) == list(range(7))  # all of them, none twice
    duplicates = torch.zeros(4, 1)  # every row on the one centre: still n distinct rows
    assert list(largest_cluster_maximum_distance(duplicates, torch.zeros(1, 1), 3)) == [0, 1, 2]


def test_last_hidden_gives_the_input_of_the_last_linear_layer_of_each_ensemble_member():
    import torch
    from torch import nn

    from lightning_modules.acquisition import last_hidden
    from lightning_modules.uncertainty import ensemble_members

    class Model(nn.Module):
        def __init__(self, members):
            super().__init__()
            self.net, self.members = members[0], members

    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    model = Model(ensemble_members(net, 2, seed=0)).train()
    x = torch.randn(10, 3)
    features = last_hidden(model, x, chunk=4)
    expected = torch.cat([m[:4](x) for m in model.members], 1)
    assert features.shape == (10, 8) and torch.allclose(features, expected) and model.training
