"""Transfer learning (diss. ch. 5): a run starts from another run's net weights, never silently from random."""

from __future__ import annotations

import os
import re

import pandas as pd
import pytest
import torch

from cli.train import main
from cli.reproduce.transfer import ARMS
from conftest import search_runs, task_args
from lightning_modules.pretrained import PretrainedError

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow

SSUB = ["--data.init_args.train_fraction=1"]


def _source(workdir, *extra):
    """A short ElemNet run on SSUB whose best checkpoint and MLflow model are the source."""
    cli = main(task_args("elemnet_transfer", *SSUB, "--model.init_args.init_from=null",
                         "--trainer.logger.init_args.run_name=source", *extra))
    return cli, cli.trainer.checkpoint_callback.best_model_path


def _weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_transfer_run_starts_from_the_source_weights(workdir):
    source, ckpt = _source(workdir)
    expected = _weights(source.model.net)  # the source's best weights, tested and logged as its model
    source_id = source.trainer.logger.run_id
    # best:ssub first: later lr-0 runs tie with the source's test MAE
    for i, init_from in enumerate(("best:ssub", ckpt, f"runs:/{source_id}/model")):
        # lr 0: fine-tuning moves nothing, so the net ends as it started
        cli = main(task_args("elemnet_transfer", *SSUB, f"--model.init_args.init_from={init_from}",
                             "--model.init_args.lr=0", "--trainer.logger.init_args.run_name=transfer",
                             f"--trainer.default_root_dir=outputs/transfer{i}"))
        got = _weights(cli.model.net)
        assert all(torch.equal(got[k], expected[k]) for k in expected), init_from
        assert cli.model.transferred_from == (f"runs:/{source_id}/model" if init_from == "best:ssub" else init_from)
    runs = search_runs(workdir, "ssub")
    tags = runs.set_index(runs["tags.mlflow.runName"].str.split("-").str[0])["tags.transfer.source"]  # source-…
    assert tags["transfer"].notna().all() and tags[["source"]].isna().all()
    # from scratch on the same folds: random weights, not the source's
    scratch = main(task_args("elemnet_transfer", *SSUB, "--model.init_args.init_from=null", "--model.init_args.lr=0"))
    assert not torch.equal(_weights(scratch.model.net)["layers.0.weight"], expected["layers.0.weight"])


def test_a_source_of_another_architecture_or_missing_is_refused(workdir):
    _, ckpt = _source(workdir)
    with pytest.raises(PretrainedError, match="another architecture than Roost"):
        main(task_args("roost_transfer", *SSUB, f"--model.init_args.init_from={ckpt}", "--trainer.fast_dev_run=true"))
    with pytest.raises(PretrainedError, match="does not exist"):
        main(task_args("elemnet_transfer", "--model.init_args.init_from=nowhere.ckpt", "--trainer.fast_dev_run=true"))
    with pytest.raises(PretrainedError, match="no finished Roost run on ssub"):
        main(task_args("roost_transfer", "--model.init_args.init_from=best:ssub", "--trainer.fast_dev_run=true"))


def test_an_ensemble_starts_its_members_from_several_sources_in_turn(workdir):
    """best2:ssub names the two best SSUB runs; member i starts from source i mod 2, and members that share a
    source learn from bootstrap weights; several sources and one net are refused."""
    from cli.sources import expand_sources

    sources = [_source(workdir, f"--seed_everything={seed}", f"--trainer.default_root_dir=outputs/source{seed}")
               for seed in (0, 1)]
    ranked = sorted(sources, key=lambda s: s[0].trainer.callback_metrics["test/mae"].item())
    expected = [_weights(cli.model.net) for cli, _ in ranked]
    assert not torch.equal(expected[0]["layers.0.weight"], expected[1]["layers.0.weight"])
    named = ",".join(f"runs:/{c.trainer.logger.run_id}/model" for c, _ in ranked)
    assert expand_sources("best5:ssub", "ElemNet", os.environ["MLFLOW_TRACKING_URI"]) == named  # as many as there are
    ensemble = ["--model.init_args.uncertainty=ensemble", "--model.init_args.lr=0", "--trainer.max_epochs=1"]
    cli = main(task_args("elemnet_transfer", *SSUB, *ensemble, "--model.init_args.ensemble_size=3",
                         "--model.init_args.init_from=best2:ssub", "--trainer.default_root_dir=outputs/three"))
    assert cli.model.transferred_from == named
    for member, start in zip(cli.model.members, [0, 1, 0]):
        got = _weights(member)
        assert all(torch.equal(got[k], expected[start][k]) for k in got), start
    assert cli.model.members_start_equal  # members 0 and 2 share a source
    files = ",".join(ckpt for _, ckpt in sources)
    two = main(task_args("elemnet_transfer", *SSUB, *ensemble, "--model.init_args.ensemble_size=2",
                         f"--model.init_args.init_from={files}", "--trainer.default_root_dir=outputs/two"))
    assert not two.model.members_start_equal and two.model.transferred_from == files
    with pytest.raises(PretrainedError, match="2 pretrained sources need an ensemble"):
        main(task_args("elemnet_transfer", *SSUB, f"--model.init_args.init_from={files}", "--trainer.fast_dev_run=true"))


def test_reproduce_transfer_table_scores_scratch_applied_and_transfer_on_the_same_folds(workdir, monkeypatch):
    import os

    from cli.reproduce import main as reproduce

    source, _ = _source(workdir)
    model = f"runs:/{source.trainer.logger.run_id}/model"
    train = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=4", "--trainer.enable_progress_bar=false",
             f"--model.init_args.init_from={model}", "--trainer.callbacks+=crash_callback.CrashOnFoldWhileEnvSet",
             f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    opts = ["transfer", "--tasks", "elemnet_transfer", "--folds", "2", "--output", str(workdir / "t.md")]
    monkeypatch.setenv("MATDL_CRASH_FOLD", "1")  # the scratch arm's second fold crashes
    with pytest.raises(RuntimeError, match="injected crash in fold 1"):
        reproduce(opts + ["--", *train])
    runs = search_runs(workdir, "reproduce")
    parent = runs[runs["tags.reproduce.table"] == "transfer"].iloc[0]
    assert parent.status == "FAILED" and parent["tags.cells_finished"] == "1 of 2 started"
    first = runs[runs["tags.reproduce.cell"] == "elemnet_transfer-scratch-fold0"].iloc[0]
    monkeypatch.delenv("MATDL_CRASH_FOLD")
    text = reproduce(opts + ["--", *train])  # resumes: fold 0 of the scratch arm is read back
    assert "| elemnet_transfer | transfer |" in text and "| 0.0642 |" in text  # beside the published number
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()].set_index("tags.reproduce.cell")
    assert len(cells) == 6 and (cells.status == "FINISHED").all()
    assert cells.loc["elemnet_transfer-scratch-fold0", "run_id"] == first.run_id
    assert cells.loc["elemnet_transfer-scratch-fold0", "end_time"] == first.end_time  # not retrained
    for k in (0, 1):
        scratch, applied, transfer = (cells.loc[f"elemnet_transfer-{arm}-fold{k}"] for arm in ARMS)
        assert pd.isna(scratch["tags.transfer.source"])
        assert applied["tags.transfer.source"] == transfer["tags.transfer.source"] == model
        assert applied["metrics.test/mae"] != transfer["metrics.test/mae"]  # fine-tuning moved the weights
        assert scratch["params.data/n_test"] == applied["params.data/n_test"] == transfer["params.data/n_test"]


def test_a_transfer_reproduction_pins_its_source_and_is_keyed_by_it(workdir):
    """``best:<dataset>`` is resolved once: every cell fine-tunes that run's net, and a reproduction after a better
    source finished is another table, not one that reads back cells fine-tuned from the old source."""
    import argparse

    from cli.reproduce.transfer import key_parts, pinned_source

    source, _ = _source(workdir)
    uri = [f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    best = pinned_source("elemnet_transfer", None, uri + ["--model.init_args.init_from=best:ssub"])
    assert best == f"runs:/{source.trainer.logger.run_id}/model"
    assert pinned_source("elemnet_transfer", None, uri + ["--model.init_args.init_from=a.ckpt"]) == "a.ckpt"
    opts = argparse.Namespace(tasks=["elemnet_transfer"], folds=10, profile=None)
    keys = [key_parts(opts, uri + [f"--model.init_args.init_from={src}"]) for src in ("best:ssub", "a.ckpt")]
    assert opts.sources == {"elemnet_transfer": "a.ckpt"} and f"elemnet_transfer.source={best}" in keys[0]
    assert keys[0][-1] != keys[1][-1]


def test_reproduce_sweep_scores_both_arms_at_each_training_fraction(workdir):
    import os

    from cli.reproduce import main as reproduce

    source, _ = _source(workdir)
    train = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.enable_progress_bar=false",
             f"--model.init_args.init_from=runs:/{source.trainer.logger.run_id}/model",
             f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    text = reproduce(["sweep", "--folds", "2", "--fractions", "0.2", "1", "--output", str(workdir / "s.md"), "--", *train])
    assert "| 0.2 |" in text and "| 1 |" in text and "0.474" in text  # the paper's end points beside ours
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()].set_index("tags.reproduce.cell")
    assert len(cells) == 8 and (cells.status == "FINISHED").all()
    small = cells.loc["elemnet_transfer-transfer-f0.2-fold1"]
    assert int(small["params.data/train_subsampled_to"]) == round(0.2 * int(small["params.data/n_train"]))
    assert pd.isna(cells.loc["elemnet_transfer-transfer-f1-fold1", "params.data/train_subsampled_to"])
    assert (workdir / "outputs" / "reproduce" / "sweep-elemnet_transfer.png").is_file()
    summed = float(re.search(r"summed: ([0-9.]+) min", text).group(1))  # every cell's train_seconds, in minutes
    assert summed == pytest.approx(cells["metrics.train_seconds"].sum() / 60, abs=0.051)


def test_experimental_table_scores_dft_models_on_all_of_ssub_and_ssub_models_on_their_folds(workdir):
    import mlflow.pyfunc
    import numpy as np

    from cli.reproduce.experimental import experimental_compositions
    from cli.reproduce import main as reproduce
    from materials.elements import ELEMNET_ELEMENTS

    oqmd = main(task_args("elemnet", "--trainer.logger.init_args.run_name=oqmd-sc"))
    oqmd_model = f"runs:/{oqmd.trainer.logger.run_id}/model"
    tl = main(task_args("elemnet_transfer", *SSUB, f"--model.init_args.init_from={oqmd_model}"))
    main(task_args("elemnet_transfer", *SSUB, f"--model.init_args.init_from={oqmd_model}", "--model.init_args.lr=0"))
    text = reproduce(["experimental", "--output", str(workdir / "x.md"), "--",
                      f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"])
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    assert rows["oqmd_formation_enthalpy"][1:5] == [rows["oqmd_formation_enthalpy"][1], "1", "—", "0"]
    ssub = rows["ssub, mean of 30 dropout-on passes"]  # elemnet_transfer predicts by MC dropout: a row of its own
    assert ssub[2:5] == ["0", f"{tl.trainer.callback_metrics['test/mae']:.4f}", "1"]  # its own test fold
    assert "0.1354 ± 0.0000" in rows["oqmd_formation_enthalpy"][5] and "0.0642 ± 0.0061" in ssub[6]
    # the OQMD model on every SSUB composition, through the MLflow pyfunc a user would load
    fractions, targets = experimental_compositions()
    formulas = ["".join(f"{ELEMNET_ELEMENTS[j]}{f[j]:.8f}" for j in np.flatnonzero(f)) for f in fractions]
    pred = mlflow.pyfunc.load_model(oqmd_model).predict(pd.DataFrame({"formula": formulas}))
    assert float(rows["oqmd_formation_enthalpy"][1]) == pytest.approx(np.abs(np.asarray(pred) - targets).mean(), abs=2e-4)


def test_a_source_trained_without_dropout_initialises_the_net_with_dropout_and_the_cpu_profile(workdir):
    """Dropout has no weights: the CPU profile's ElemNet (no dropout) is a source for Table 3.1's ElemNet (its
    tensors numbered differently), and the CPU transfer profile takes a source with dropout the same way."""
    from conftest import CONFIGS

    cpu = ["--config", str(CONFIGS / "profiles" / "cpu" / "elemnet_transfer.yaml")]
    source = main(task_args("elemnet_transfer", *cpu, *SSUB, "--model.init_args.init_from=null"))
    weights = list(_weights(source.model.net).values())
    ckpt = source.trainer.checkpoint_callback.best_model_path
    with_dropout = main(task_args("elemnet_transfer", *SSUB, f"--model.init_args.init_from={ckpt}",
                                  "--model.init_args.lr=0", "--test_after_fit=false"))
    got = _weights(with_dropout.model.net)
    assert list(got) != list(_weights(source.model.net))  # other tensor names: layers.N moved by the dropouts
    assert all(torch.equal(a, b) for a, b in zip(got.values(), weights))
    back = main(task_args("elemnet_transfer", *cpu, *SSUB, "--model.init_args.lr=0", "--test_after_fit=false",
                          f"--model.init_args.init_from={with_dropout.trainer.checkpoint_callback.best_model_path}"))
    assert all(torch.equal(a, b) for a, b in zip(_weights(back.model.net).values(), weights))
