"""Reconstructions keep the volume fraction exactly and come closer to the original's descriptors than chance."""

import numpy as np
import pandas as pd
import pytest
import torch

from materials.microstructure import MicrostructureSampler
from materials.reconstruction import METHODS, descriptor_errors


def _particles(size=24):
    volume = MicrostructureSampler(size=size, volume_fraction=(0.3, 0.3), morphologies=("particles",)).draw([1])
    return volume["micro"][0].double()


@pytest.mark.parametrize("method", ["descriptor", "gram", "grf"])
def test_reconstructions_keep_the_volume_fraction_and_approach_the_statistics(method):
    target = _particles()[:, :, 0]
    out = METHODS[method](target, steps=150, seed=0)
    assert set(out.unique().tolist()) == {0.0, 1.0} and out.sum() == target.sum()  # exactly the same fraction
    shuffled = target.flatten()[torch.randperm(target.numel(), generator=torch.Generator().manual_seed(0))]
    chance = descriptor_errors(target, shuffled.reshape(target.shape))  # same fraction, no structure
    errors = descriptor_errors(target, out)
    assert errors["two_point_error"] < chance["two_point_error"], (errors, chance)
    assert errors["lineal_path_error"] < chance["lineal_path_error"], (errors, chance)


def test_make_reconstruct_logs_a_run_and_names_bad_input(workdir, capsys):
    import mlflow

    from cli.reconstruct import main

    image = workdir / "slice.npy"
    np.save(image, _particles(16)[:, :, 0].numpy().astype(np.uint8))
    scores = main(["--input", str(image), "--methods", "descriptor", "--steps", "20"])
    assert set(scores) == {"descriptor", "grf"}
    runs = mlflow.search_runs(experiment_names=["reconstruction"])
    assert len(runs) == 1 and pd.notna(runs.iloc[0]["metrics.grf/two_point_error"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.iloc[0].run_id)}
    assert {"plots", "descriptor.npy", "grf.npy"} <= artifacts
    bad = workdir / "bad.npy"
    np.save(bad, np.array([[0, 1, 2, 0]] * 4))
    for path, message in ((bad, "values must be 0 or 1 (two phases); pixel (0, 2) is 2"),
                          (workdir / "none.npy", "does not exist"), (workdir / "mlruns", "is not a file")):
        with pytest.raises(SystemExit) as stop:
            main(["--input", str(path)])
        assert stop.value.code == 2 and message in capsys.readouterr().err
