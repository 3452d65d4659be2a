"""``make reproduce TABLE=learning-curve``: a microstructure CNN on nested shares of its training elements."""

import numpy as np
import pytest

from cli.reproduce.learning_curve import power_law
from conftest import CONFIGS, SMOKE_DATA, search_runs


def test_the_power_law_recovers_its_slope_and_the_error_at_twice_the_data():
    sizes = np.array([100, 200, 400])
    slope, doubled = power_law(sizes, 30.0 * sizes**-0.5)
    assert slope == pytest.approx(-0.5) and doubled == pytest.approx(30.0 * 800**-0.5)


def test_a_composition_task_is_refused_before_anything_trains(workdir):
    from cli.reproduce import main as reproduce

    with pytest.raises(SystemExit, match="microstructure CNN"):
        reproduce(["learning-curve", "--task", "elemnet"])
    assert search_runs(workdir, "reproduce").empty


@pytest.mark.slow
def test_localization_trains_on_nested_shares_beside_mks_and_resumes(workdir):
    import os

    from cli.reproduce import main as reproduce

    train = ["--config", str(CONFIGS / "smoke.yaml"), *SMOKE_DATA["localization"],
             f"--trainer.logger.init_args.tracking_uri={os.environ['MLFLOW_TRACKING_URI']}"]
    opts = ["learning-curve", "--task", "localization", "--fractions", "0.5", "1", "--seeds", "0",
            "--output", str(workdir / "lc.md")]
    text = reproduce(opts + ["--", *train])
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith(("| 0.5 |", "| 1 |"))]
    assert [int(r[1]) for r in rows] == [4, 8]  # 12 elements, 70 % for training: half of 8, then all 8
    assert "| CNN | mks |" in text and "n^" in text
    assert (workdir / "outputs" / "reproduce" / "learning-curve-localization.png").stat().st_size > 0
    cells = search_runs(workdir, "reproduce").dropna(subset=["tags.reproduce.cell"])
    assert sorted(cells["tags.reproduce.cell"]) == ["localization-f0.5-seed0", "localization-f1-seed0"]
    assert reproduce(opts + ["--", *train]).split("hardware:")[0] == text.split("hardware:")[0]  # read back
