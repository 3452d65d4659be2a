"""A trained composition model as something that predicts from formulas.

``load_composition_model`` rebuilds the net (from the checkpoint's saved hyperparameters) and the featuriser
with its training-split scaling (from the datamodule state in the checkpoint); ``predict_formulas`` scores a
list of formulas with them. ``make predict``, ``make screen``, ``make analyze``, the reproductions and the
logged MLflow model (``callbacks.composition_model``) all load a model this way.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datamodules.composition import CompositionDataModule
from lightning_modules.regression import PropertyRegressor


def load_composition_model(checkpoint: str | Path) -> tuple[PropertyRegressor, CompositionDataModule]:
    """The regressor (in eval mode) and the datamodule that featurises for it."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    module = PropertyRegressor.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    module.eval()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hparams = dict(state.get("datamodule_hyper_parameters", {}))
    accepted = inspect.signature(CompositionDataModule.__init__).parameters
    datamodule = CompositionDataModule(**{k: v for k, v in hparams.items() if k in accepted})
    datamodule.load_state_dict(state.get(CompositionDataModule.__qualname__, {}))
    return module, datamodule


@torch.no_grad()
def predict_formulas(module: PropertyRegressor, datamodule: CompositionDataModule, formulas,
                     skip_bad: bool = False, source: str = "<input>", first_row: int = 2,
                     batch_size: int = 65536) -> pd.DataFrame:
    """A table of formula, prediction (NaN for rows skipped as bad), and ``std`` when the model was trained
    with uncertainty (MC dropout or an ensemble): the calibrated σ' with the central 95 % interval
    (``low_95``, ``high_95``) when the model carries a calibration (:mod:`lightning_modules.calibration`)."""
    formulas = list(formulas)
    x, parsed = datamodule.featurize_formulas(formulas, skip_bad=skip_bad, source=source, first_row=first_row)
    outputs = [module.raw_predict_with_std(chunk) for chunk in x.split(batch_size)]
    table = pd.DataFrame({"formula": formulas})
    columns = {"prediction": [mean for mean, _ in outputs]}
    calibration = getattr(module, "calibration", None)
    if module.hparams.get("uncertainty", "none") != "none":
        if calibration is None:
            columns["std"] = [std for _, std in outputs]
        else:
            columns["std"] = [calibration.sigma(std) for _, std in outputs]
            bounds = [calibration.interval(mean, std, 0.95) for mean, std in outputs]
            columns["low_95"], columns["high_95"] = [lo for lo, _ in bounds], [hi for _, hi in bounds]
    for name, chunks in columns.items():
        out = np.full(len(formulas), np.nan, dtype=np.float64)
        if chunks:
            out[parsed.ok] = torch.cat(chunks).squeeze(1).double().numpy()
        table[name] = out
    return table
