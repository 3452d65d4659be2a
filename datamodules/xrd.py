"""2D diffraction frames + composition → phase region (PADNet, diss. ch. 7).

``prepare_data`` simulates the library once (:mod:`datamodules.simulate.xrd`) and computes the
minimum-filter (MF) and mean-filter (CS) backgrounds of every frame once (a cache beside it);
``setup`` only reads, validates and splits. A user's own frames (``dataset:`` an ``.h5`` or
``.npz`` with ``frames`` (n, n_frames, H, W) counts, ``composition`` (n, 3) fractions summing to
one and ``label`` (n,) integers, optional ``class_names``) go through the same checks; their
backgrounds are computed in ``setup``.

Splits are stratified by class: ``kfold`` makes fold ``fold`` of ``n_folds`` the test set (the
paper's 10-fold CV: ~160 / ~18 samples) and holds out ``val_fraction`` of the rest per class for
early stopping; a class that cannot be in a fold's training part stops the run with its name.
Batches are ``(frames, composition, label)`` with frames of the chosen input ``I``, ``I-MF`` or
``I-CS`` (``train_input`` for training and validation, ``test_input`` for testing); ``train_input:
mixed`` trains on all three at once (:class:`TrainingFrames`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch

from datamodules.batches import SplitLoaders, TensorRows, data_device
from datamodules.simulate.xrd import CLASS_NAMES, XRDDatasetSpec, generate, open_checked, verify
from datamodules.sources.registry import data_dir
from materials.xrd_background import INPUTS, background, background_removed
from materials.xrd_geometry import preset as instrument

Input = Literal["I", "I-MF", "I-CS"]
TrainInput = Literal["I", "I-MF", "I-CS", "mixed"]


class TrainingFrames(TensorRows):
    """Training rows of (frames, composition, label), varied per batch by a seeded generator.

    - ``frames`` of shape (n, k, n_frames, H, W) hold k inputs of each sample (``train_input: mixed``: I,
      I − MF and I − CS): each sample of a batch is shown as one of them, drawn at random, so one net learns
      to classify raw and background-removed frames alike.
    - ``mirror_axis``: each frame is mirrored about the scattering plane with probability 1/2. The PONI sits at
      the detector centre, so the mirror image is the same rings seen from the other side of the plane: a
      physically valid frame of the same sample.
    """

    def __init__(self, *tensors: torch.Tensor, mirror_axis: int | None, seed: int = 0):
        super().__init__(*tensors)
        self.axis, self.generator = mirror_axis, torch.Generator().manual_seed(seed)

    def __getitem__(self, rows):
        frames, composition, label = super().__getitem__(rows)
        if frames.ndim == 5:
            pick = torch.randint(frames.shape[1], (len(frames),), generator=self.generator).to(frames.device)
            frames = frames[torch.arange(len(frames), device=frames.device), pick]
        if self.axis is not None:
            flip = (torch.rand(len(frames), generator=self.generator) < 0.5).to(frames.device)
            frames = torch.where(flip[:, None, None, None], frames.flip(self.axis), frames)
        return frames, composition, label


def validate_library(frames: np.ndarray, composition: np.ndarray, labels: np.ndarray, n_frames: int,
                     n_classes: int, source: str, preset_name: str = "", sample_ids: np.ndarray | None = None) -> None:
    """Raise a ValueError naming the file, sample and value of the first bad entry (``sample_ids``: the
    samples' indices in the file when ``frames`` holds a subset)."""
    frames, composition, labels = np.asarray(frames), np.asarray(composition), np.asarray(labels)
    ids = np.arange(len(frames)) if sample_ids is None else np.asarray(sample_ids)
    if frames.dtype == bool or not (np.issubdtype(frames.dtype, np.integer) or np.issubdtype(frames.dtype, np.floating)):
        raise ValueError(f"{source}: frames must hold integer or real counts, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[2] != frames.shape[3]:
        raise ValueError(f"{source}: frames must be (samples, frames per sample, H, W) with square frames, "
                         f"got shape {frames.shape}")
    if frames.shape[1] != n_frames:
        what = f"preset {preset_name} records" if preset_name else "the task expects"
        hint = " (is the second frame, 2θ 30-60°, missing?)" if frames.shape[1] < n_frames else ""
        raise ValueError(f"{source}: {what} {n_frames} frame(s) per sample, the file has {frames.shape[1]}{hint}")
    n = len(frames)
    if composition.shape != (n, 3) or labels.shape != (n,):
        raise ValueError(f"{source}: need composition (n, 3) and label (n,) for {n} samples, got "
                         f"{composition.shape} and {labels.shape}")
    if np.issubdtype(frames.dtype, np.floating):
        bad = ~np.isfinite(frames).reshape(n, -1).all(1) | (frames.reshape(n, -1) < 0).any(1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            values = frames[i][~np.isfinite(frames[i]) | (frames[i] < 0)]
            raise ValueError(f"{source}: sample {ids[i]} has negative or NaN counts (e.g. {values[0]}); "
                             f"{int(bad.sum())} samples are affected")
    elif np.issubdtype(frames.dtype, np.signedinteger) and (frames < 0).any():
        i = int(np.flatnonzero((frames.reshape(n, -1) < 0).any(1))[0])
        raise ValueError(f"{source}: sample {ids[i]} has negative counts (min {frames[i].min()})")
    sums = composition.sum(1)
    bad = ~np.isfinite(sums) | (np.abs(sums - 1) > 1e-3) | (composition < 0).any(1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: composition of sample {ids[i]} is {composition[i].tolist()} (sum {sums[i]:.4g}); "
                         "cation fractions must be non-negative and sum to one")
    check_labels(labels, n_classes, source)


def check_labels(labels: np.ndarray, n_classes: int, source: str) -> None:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{source}: labels must be a vector of integers, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{source}: labels must be integers in [0, {n_classes}), got {labels.dtype} "
                         f"{labels.min()}..{labels.max()}")


def stratified_split(labels: np.ndarray, method: str, n_folds: int, fold: int, val_fraction: float,
                     test_fraction: float, seed: int, class_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Row indices of train / val / test, stratified by class (every class keeps ≥ 1 training sample)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    rows = np.arange(len(labels))
    counts = np.bincount(labels, minlength=len(class_names))
    if method == "kfold":
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold must be in [0, {n_folds}), got {fold}")
        if counts.min() < 2:
            k = int(np.argmin(counts))
            raise ValueError(f"class {class_names[k]!r} has {counts[k]} sample(s): a fold whose test set holds it "
                             "has none to train on; stratified k-fold needs at least 2 per class")
        if counts.max() < n_folds:
            raise ValueError(f"{n_folds} stratified folds need at least one class of {n_folds} samples; the largest has "
                             f"{counts.max()} (counts per class: {counts.tolist()})")
        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        rest, test = list(skf.split(rows, labels))[fold]
    elif method == "random":
        rest, test = train_test_split(rows, test_size=test_fraction, stratify=labels, random_state=seed)
    else:
        raise ValueError(f"unknown split {method!r}: use kfold or random")
    rng = np.random.default_rng(seed + 7919 * fold)
    val = []
    for k in range(len(class_names)):  # per class: val_fraction of its non-test samples, at least one left to train
        members = rng.permutation(rest[labels[rest] == k])
        val.extend(members[:min(int(round(val_fraction * len(members))), max(len(members) - 1, 0))])
    if not val and val_fraction > 0:  # tiny sets: one validation sample from the largest class
        k = int(np.argmax(np.bincount(labels[rest], minlength=len(class_names))))
        val = list(rng.permutation(rest[labels[rest] == k])[:1])
    val = np.sort(np.array(val, dtype=int))
    train = np.setdiff1d(rest, val)
    missing = [class_names[k] for k in range(len(class_names)) if counts[k] and not (labels[train] == k).any()]
    if missing:
        raise ValueError(f"class(es) {missing} absent from the training part of fold {fold} "
                         f"(counts per class: {counts.tolist()})")
    return {"train": train, "val": val, "test": np.sort(test)}


class XRDFramesDataModule(SplitLoaders, pl.LightningDataModule):
    """Frames of one instrument preset (``SLAC``: 1 frame, ``NIST``: 2) with compositions and phase-region labels.

    Args:
        preset: ``SLAC`` or ``NIST`` (:data:`materials.xrd_geometry.PRESETS`).
        dataset: ``simulated`` or a path to your own ``.h5``/``.npz``.
        n_samples, frame_size, spottiness, peak_counts, background_counts: the simulated library
            (:class:`datamodules.simulate.xrd.XRDDatasetSpec`); 177 samples as the paper; 2048 px is the paper's frame.
        background_filter: f of the MF/CS filters in pixels; default 200 px at 2048², scaled to the frame size.
        train_input / test_input: ``I``, ``I-MF`` or ``I-CS`` (Fig. 7.7's train and test inputs); ``train_input:
            mixed`` trains on all three (each training sample drawn as one of them per batch, the validation set
            holds every sample in each), for a net that classifies raw and background-removed frames alike
            (three times the training frames in memory).
        split: ``kfold`` (``n_folds``, ``fold``) or ``random`` (``test_fraction``); ``val_fraction`` of the rest is
            the validation set, per class.
        train_fraction: train on only this seeded share of the training samples (quick runs).
        augment: mirror training frames about the scattering plane at random (:class:`TrainingFrames`).
        data_device: ``auto`` keeps the frames on the training device, ``cpu`` in host memory.
    """

    def __init__(self, preset: Literal["SLAC", "NIST"] = "SLAC", dataset: str = "simulated", n_samples: int = 177,
                 frame_size: int = 256, spottiness: float = 1.0, peak_counts: float | None = None,
                 background_counts: float | None = None, simulation_seed: int = 0, background_filter: int | None = None,
                 train_input: TrainInput = "I", test_input: Input = "I", split: Literal["kfold", "random"] = "kfold",
                 n_folds: int = 10, fold: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 seed: int = 0, batch_size: int = 8, eval_batch_size: int = 32, train_fraction: float = 1.0,
                 augment: bool = True, data_device: Literal["auto", "cpu"] = "auto"):
        super().__init__()
        self.save_hyperparameters()
        self.instrument = instrument(preset)
        for name, value, allowed in (("train_input", train_input, INPUTS + ("mixed",)), ("test_input", test_input, INPUTS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.spec = XRDDatasetSpec(preset, n_samples, frame_size, simulation_seed, spottiness=spottiness,
                                   peak_counts=peak_counts, background_counts=background_counts)
        self.class_names: tuple[str, ...] = CLASS_NAMES
        self.arrays: dict[str, dict[str, np.ndarray]] = {}

    # ----- sizes the net needs -----
    @property
    def n_features(self) -> int:
        """Frame side in pixels (PADNet's input is n_frames × n_features × n_features)."""
        return self.hparams.frame_size if self.hparams.dataset == "simulated" else int(self._user()["frames"].shape[-1])

    @property
    def n_frames(self) -> int:
        return len(self.instrument.frames)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def filter_size(self) -> int:
        f = self.hparams.background_filter
        return int(f) if f else max(3, round(200 * self.n_features / 2048))

    # ----- files -----
    @property
    def path(self) -> Path:
        return data_dir() / "xrd" / self.spec.cache_name()

    @property
    def background_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}-background-f{self.filter_size}.h5")

    def _needs_background(self) -> bool:
        return {self.hparams.train_input, self.hparams.test_input} != {"I"}

    def prepare_data(self):
        if self.hparams.dataset != "simulated":
            return
        generate(self.spec, data_dir() / "xrd")
        if self._needs_background():
            self._write_background()

    def _write_background(self):
        import h5py

        path, f = self.background_path, self.filter_size
        if path.exists():
            try:
                with h5py.File(path, "r") as h:
                    same = h.attrs.get("source") == self.path.name and int(h.attrs.get("f", -1)) == f
            except OSError:
                same = False
            if same and verify(path):  # every chunk's checksum
                return
            path.unlink()
        backend = "torch" if torch.cuda.is_available() else "scipy"
        tmp = path.with_suffix(".partial")
        with open_checked(self.path, self.spec) as src, h5py.File(tmp, "w") as out:
            shape, chunk = src["frames"].shape, (1, 1) + src["frames"].shape[2:]
            sets = {k: out.create_dataset(k, shape, dtype="f4", chunks=chunk, compression="gzip", compression_opts=1,
                                          fletcher32=True) for k in ("MF", "CS")}
            for i in range(0, shape[0], 16):
                frames = src["frames"][i:i + 16].astype(np.float32)
                mf, cs = background(torch.from_numpy(frames).cuda() if backend == "torch" else frames, f, backend)
                sets["MF"][i:i + 16], sets["CS"][i:i + 16] = mf, cs
            out.attrs["source"], out.attrs["f"], out.attrs["backend"] = self.path.name, f, backend
        tmp.rename(path)

    def _user(self) -> dict[str, np.ndarray]:
        if not hasattr(self, "_user_arrays"):
            path = Path(self.hparams.dataset)
            if not path.exists():
                raise FileNotFoundError(f"dataset {path} not found (use 'simulated' or an .h5/.npz file)")
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            else:
                import h5py

                with h5py.File(path, "r") as h:
                    arrays = {k: h[k][:] for k in h if isinstance(h[k], h5py.Dataset)}
                    if "class_names" in h.attrs:
                        arrays["class_names"] = np.array(json.loads(h.attrs["class_names"]))
            missing = {"frames", "composition", "label"} - set(arrays)
            if missing:
                raise ValueError(f"{path}: missing array(s) {sorted(missing)}")
            self._user_arrays = arrays
        return self._user_arrays

    def _read(self) -> tuple[dict[str, np.ndarray], str]:
        """Compositions and labels of every sample (frames are read per split)."""
        if self.hparams.dataset != "simulated":
            arrays = self._user()
            if "class_names" in arrays:
                self.class_names = tuple(str(c) for c in arrays["class_names"])
            else:
                self.class_names = tuple(f"class {k}" for k in range(int(np.max(arrays["label"])) + 1))
            return {k: arrays[k] for k in ("composition", "label")}, str(self.hparams.dataset)
        with open_checked(self.path, self.spec) as h:
            return {k: h[k][:] for k in ("composition", "label")}, str(self.path)

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        """The raw frames of the (sorted) ``rows``."""
        if self.hparams.dataset != "simulated":
            return self._user()["frames"][rows]
        with open_checked(self.path, self.spec) as h:
            return h["frames"][rows]

    def raw_frames(self, rows: np.ndarray) -> np.ndarray:
        """Raw counts of samples ``rows`` (sorted), whatever the network's input."""
        return self._raw(np.asarray(rows))

    def composition(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._data["composition"])[rows].astype(np.float64)

    def labels(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._data["label"])[rows].astype(np.int64)

    def _as_inputs(self, raw: np.ndarray, rows: np.ndarray, kinds: tuple[str, ...]) -> list[np.ndarray]:
        """``raw`` frames as each input of ``kinds`` (I, or minus the MF or CS background); the background is
        computed (a user's file) or read (the simulated library's cache) once for all of them."""
        mf = cs = None
        if set(kinds) - {"I"}:
            if self.hparams.dataset != "simulated":
                mf, cs = background(raw.astype(np.float32), self.filter_size)
            else:
                import h5py

                with h5py.File(self.background_path, "r") as h:
                    mf, cs = (h[k][rows] if f"I-{k}" in kinds else None for k in ("MF", "CS"))
        return [background_removed(raw, mf, cs, kind) for kind in kinds]

    def _split_arrays(self, data: dict[str, np.ndarray], rows: np.ndarray, kind: str, source: str,
                      stacked: bool = False) -> dict:
        """Frames of ``rows`` as input ``kind``; ``mixed``: every input of each sample, stacked on axis 1 (the
        training set, :class:`TrainingFrames` draws one) or ``stacked=False``, one row per sample and input."""
        raw = self._raw(rows)
        validate_library(raw, data["composition"][rows], data["label"][rows], self.n_frames, len(self.class_names),
                         source, self.hparams.preset, sample_ids=rows)
        frames = self._as_inputs(raw, rows, INPUTS if kind == "mixed" else (kind,))
        arrays = {"composition": data["composition"][rows].astype(np.float32),
                  "label": data["label"][rows].astype(np.int64), "rows": rows}
        if len(frames) == 1 or stacked:
            return {"frames": frames[0] if len(frames) == 1 else np.stack(frames, 1), **arrays}
        return {"frames": np.concatenate(frames), **{k: np.concatenate([v] * len(frames)) for k, v in arrays.items()}}

    def setup(self, stage: str | None = None):
        if self.arrays:
            return
        data, source = self._read()
        check_labels(data["label"], len(self.class_names), source)
        h = self.hparams
        self.parts = stratified_split(np.asarray(data["label"]).astype(np.int64), h.split, h.n_folds, h.fold,
                                      h.val_fraction, h.test_fraction, h.seed, self.class_names)
        if h.train_fraction < 1:
            keep = max(2, round(h.train_fraction * len(self.parts["train"])))
            self.parts["train"] = np.sort(np.random.default_rng(h.seed).permutation(self.parts["train"])[:keep])
        self._data, self._source = data, source
        self.arrays = {split: self._split_arrays(data, rows, h.test_input if split == "test" else h.train_input, source,
                                                 stacked=split == "train")
                       for split, rows in self.parts.items()}
        labels = np.asarray(data["label"]).astype(np.int64)
        self.cleaning_report = {"source": source, "class_names": list(self.class_names),
                                "class_counts": np.bincount(labels, minlength=self.n_classes).tolist(),
                                "sizes": {s: len(rows) for s, rows in self.parts.items()},
                                "train_input": h.train_input, "test_input": h.test_input,
                                "background_filter": self.filter_size if self._needs_background() else None}
        self.splits = {s: self._tensors(a, train=s == "train") for s, a in self.arrays.items()}

    def _tensors(self, arrays: dict, train: bool = False) -> TensorRows:
        device = data_device(self)
        tensors = [torch.from_numpy(arrays[k]).to(device) for k in ("frames", "composition", "label")]
        if train and (self.hparams.augment or tensors[0].ndim == 5):
            axis = -1 if self.instrument.frames[0].axis == "vertical" else -2  # the columns / rows across the plane
            return TrainingFrames(*tensors, mirror_axis=axis if self.hparams.augment else None, seed=self.hparams.seed)
        return TensorRows(*tensors)

    def set_test_input(self, kind: str) -> None:
        """Swap the test frames to input ``kind`` (``I``, ``I-MF``, ``I-CS``); the split stays as it is."""
        if kind not in INPUTS:
            raise ValueError(f"test input must be one of {INPUTS}, got {kind!r}")
        if kind == self.hparams.test_input:
            return
        self.hparams.test_input = kind
        self.cleaning_report["test_input"] = kind
        if self.hparams.dataset == "simulated" and kind != "I":
            self._write_background()
        self.arrays["test"] = self._split_arrays(self._data, self.parts["test"], kind, self._source)
        self.splits["test"] = self._tensors(self.arrays["test"])
