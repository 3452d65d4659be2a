"""MVE datasets: generated once, resumed after an interruption, verified before use, split by element."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from datamodules.microstructure import HomogenizationDataModule, LocalizationDataModule
from datamodules.simulate.mve import MVEDatasetSpec, generate, open_checked

SPEC = MVEDatasetSpec(kind="localization", n_elements=10, size=9, contrast=10, batch=4)


def _arrays(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in f}


def test_generation_records_labels_and_resumes_to_the_same_file(tmp_path):
    path = generate(SPEC, tmp_path / "a", progress=False)
    full = _arrays(path)
    assert full["micro"].shape == (10, 9, 9, 9) and full["strain11"].shape == (10, 9, 9, 9)
    assert np.all(full["residual"] <= SPEC.tol * 1.01) and np.all(full["iterations"] > 0)
    assert np.allclose(full["strain11"].mean(axis=(1, 2, 3)), 1, atol=1e-5)  # the mean strain is the applied one
    assert np.allclose(full["volume_fraction"], full["micro"].mean(axis=(1, 2, 3)))
    # a crash after the first batch: the counter says 4, the rest is garbage
    with h5py.File(path, "r+") as f:
        f.attrs["n_done"] = 4
        f["micro"][4:] = 0
        f["c11"][4:] = -1
    with pytest.raises(ValueError, match="only 4 of 10 elements generated"):
        open_checked(path, SPEC)
    # resumed with another batch size, in the passive-OpenMP worker process that labels large datasets: same content
    generate(dataclasses.replace(SPEC, batch=3), tmp_path / "a", progress=False, worker=True)
    resumed = _arrays(path)
    for name, values in full.items():
        assert np.allclose(resumed[name], values, rtol=1e-6, atol=1e-9), name


def test_a_solver_failure_in_the_worker_reaches_the_caller(tmp_path):
    from materials.elasticity import SolverNotConverged

    with pytest.raises(SolverNotConverged, match="did not converge in 2 iterations") as failure:
        generate(dataclasses.replace(SPEC, max_iter=2), tmp_path, progress=False, worker=True)
    assert failure.value.residuals.shape == (4,)


def test_a_whole_number_and_its_float_name_the_same_dataset():
    """``contrast=50`` from Python and ``50.0`` from a YAML file: one cache (two made a run label 3,000 again)."""
    assert dataclasses.replace(SPEC, contrast=10).cache_name() == dataclasses.replace(SPEC, contrast=10.0).cache_name()
    assert (dataclasses.replace(SPEC, correlation_length=(1, 4)).content()
            == dataclasses.replace(SPEC, correlation_length=(1.0, 4.0)).content())


def test_cache_refuses_other_parameters_and_corrupted_chunks(tmp_path):
    path = generate(SPEC, tmp_path, progress=False)
    other = dataclasses.replace(SPEC, contrast=50)
    assert other.cache_name() != SPEC.cache_name()
    with pytest.raises(ValueError, match="other parameters"):
        open_checked(path, other)
    with h5py.File(path, "r") as f:
        offset = f["micro"].id.get_chunk_info(3).byte_offset
    with open(path, "r+b") as raw:
        raw.seek(offset + 10)
        byte = raw.read(1)
        raw.seek(offset + 10)
        raw.write(bytes([byte[0] ^ 0xFF]))
    with open_checked(path, SPEC) as f, pytest.raises(OSError):
        f["micro"][3]


def test_bad_dataset_parameters_are_refused():
    with pytest.raises(ValueError, match="contrast"):
        MVEDatasetSpec(contrast=-1)
    with pytest.raises(ValueError, match="volume_fraction"):
        MVEDatasetSpec(volume_fraction=(0.2, 1.0))
    with pytest.raises(ValueError, match="split"):
        HomogenizationDataModule(split=(0.5, 0.5, 0.5))


def test_datamodules_split_by_element_and_read_neighbourhoods(tmp_path, monkeypatch):
    monkeypatch.setenv("MATDL_DATA_DIR", str(tmp_path))
    dm = LocalizationDataModule(n_elements=10, size=9, neighbourhood=5, batch_size=64, simulate_batch=5)
    dm.prepare_data()
    dm.setup()
    sizes = {s: len(a["micro"]) for s, a in dm.arrays.items()}
    assert sizes == {"train": 7, "val": 2, "test": 1}
    seen = np.concatenate([np.packbits(a["micro"].reshape(len(a["micro"]), -1), axis=1) for a in dm.arrays.values()])
    assert len(np.unique(seen, axis=0)) == 10  # every element in exactly one split
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 5, 5, 5) and y.shape == (64, 1) and dm.n_features == 5
    data = dm.datasets["train"]
    rows = torch.tensor([0, 729 + 300, 6 * 729 + 728])
    x, y = data[rows]
    element, voxel = rows // 729, rows % 729
    micro, strain = dm.arrays["train"]["micro"], dm.arrays["train"]["strain11"]
    for b in range(3):
        idx = np.unravel_index(int(voxel[b]), (9, 9, 9))
        assert x[b, 2, 2, 2] == micro[element[b]][idx]  # the focal voxel sits in the centre
        assert y[b, 0] == pytest.approx(float(strain[element[b]][idx]))
    whole = LocalizationDataModule(n_elements=10, size=9, neighbourhood=5, simulate_batch=5, elements_per_batch=2)
    whole.prepare_data()  # the same cache
    whole.setup()
    x, y = next(iter(whole.test_dataloader()))
    assert x.shape == (1, 1, 9, 9, 9) and y.shape == (729, 1)
    _, y_voxels = dm.datasets["test"][torch.arange(729)]  # the voxel samples of the test element, in order
    assert torch.equal(y, y_voxels) and torch.equal(x[0, 0], torch.from_numpy(dm.arrays["test"]["micro"][0]).float())
    assert [len(b[0]) for b in whole.train_dataloader()] == [2, 2, 2, 1]
    with pytest.raises(ValueError, match="elements_per_batch"):
        LocalizationDataModule(elements_per_batch=0)
    sampled = LocalizationDataModule(n_elements=10, size=9, neighbourhood=5, simulate_batch=5, elements_per_batch=2,
                                     voxels_per_element=50)
    sampled.prepare_data()
    sampled.setup()
    (x, voxels), y = next(iter(sampled.train_dataloader()))
    assert x.shape == (2, 1, 9, 9, 9) and voxels.shape == (2, 50) and y.shape == (100, 1)
    assert all(len(set(v.tolist())) == 50 for v in voxels)  # 50 different voxels of each element
    strain = torch.from_numpy(sampled.arrays["train"]["strain11"]).reshape(len(sampled.arrays["train"]["micro"]), -1)
    (x, voxels), y = sampled.datasets["train"][torch.tensor([3, 1])]
    assert torch.equal(y.reshape(2, 50), strain[[3, 1]].gather(1, voxels))
    assert not torch.equal(voxels, sampled.datasets["train"][torch.tensor([3, 1])][0][1])  # new voxels each time
    val = [b[0][1] for b in sampled.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(val, [b[0][1] for b in sampled.val_dataloader()]))  # fixed
    x, y = next(iter(sampled.test_dataloader()))
    assert x.shape == (1, 1, 9, 9, 9) and y.shape == (729, 1)  # the test scores every voxel
    with pytest.raises(ValueError, match="voxels_per_element needs elements_per_batch"):
        LocalizationDataModule(voxels_per_element=50)
    homogenization = HomogenizationDataModule(n_elements=6, size=9, batch_size=4)
    homogenization.prepare_data()
    homogenization.setup()
    x, y = next(iter(homogenization.test_dataloader()))
    assert x.shape[1:] == (1, 9, 9, 9) and y.dtype == torch.float32
