"""``make reproduce TABLE=crabnet``: every composition net over seeds, one table, published numbers beside."""

from __future__ import annotations

import os

from conftest import search_runs


def test_crabnet_table_trains_each_net_per_seed_says_when_the_split_is_not_crabnets_and_resumes(workdir):
    from cli.reproduce import main as reproduce

    train = ["--data.init_args.dataset=ssub", "--data.init_args.split=random", "--data.init_args.skip_bad_rows=true",
             "--trainer.max_epochs=1", "--trainer.limit_train_batches=4", "--trainer.enable_progress_bar=false",
             f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    opts = ["crabnet", "--tasks", "elemnet", "roost", "--seeds", "0", "1", "--output", str(workdir / "c.md")]
    text = reproduce(opts + ["--", *train])
    assert "NOT the CrabNet split" in text  # SSUB here: the published column is not comparable, and it says so
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "0.0489" in rows["elemnet"] and "0.0315" in rows["roost"] and "0.0311" in rows["CrabNet"]
    assert "4,631,361" in rows["elemnet"] and " ± " in rows["roost"]
    runs = search_runs(workdir, "reproduce")
    cells = runs[runs["tags.reproduce.cell"].notna()]
    assert sorted(cells["tags.reproduce.cell"]) == ["elemnet-seed0", "elemnet-seed1", "roost-seed0", "roost-seed1"]
    assert (cells.status == "FINISHED").all() and (cells["metrics.train_seconds"] > 0).all()
    seeds = cells.set_index("tags.reproduce.cell")["metrics.test/mae"]
    assert seeds["roost-seed0"] != seeds["roost-seed1"]  # the seed reaches the run
    started = cells["start_time"].max()
    assert reproduce(opts + ["--", *train]).split("hardware:")[0] == text.split("hardware:")[0]  # read back
    runs = search_runs(workdir, "reproduce")
    assert runs[runs["tags.reproduce.cell"].notna()]["start_time"].max() == started
