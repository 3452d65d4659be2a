"""Floor 2: what watches a run (MLflow artifacts, plots, the logged model)."""

from callbacks.calibration import UncertaintyCalibration
from callbacks.checkpoint import EveryEpochCheckpoint
from callbacks.composition_model import LogCompositionModel
from callbacks.confusion_matrix import ConfusionMatrixArtifact
from callbacks.ebsd_baselines import DictionaryIndexingBaseline
from callbacks.ebsd_noise_sweep import NoiseSweep
from callbacks.extrapolation import ExtrapolationErrors
from callbacks.gan_samples import GANSamples
from callbacks.mlflow_run import MLflowRunInfo, MLflowSaveConfig, RunLogger
from callbacks.polymorph_metrics import PolymorphMetrics
from callbacks.mve_baselines import HomogenizationBaselines, LocalizationBaselines
from callbacks.orientation_plots import DisorientationPlots
from callbacks.regression_plots import RegressionPlots
from callbacks.timeline import RunTimeline
from callbacks.weight_ema import WeightEMA
from callbacks.xrd_baselines import XRDBaselines

__all__ = ["ConfusionMatrixArtifact", "DictionaryIndexingBaseline", "EveryEpochCheckpoint", "DisorientationPlots", "ExtrapolationErrors", "GANSamples", "HomogenizationBaselines", "LocalizationBaselines",
           "LogCompositionModel", "MLflowRunInfo", "MLflowSaveConfig", "NoiseSweep",
           "PolymorphMetrics", "RegressionPlots", "RunLogger", "RunTimeline", "UncertaintyCalibration", "WeightEMA", "XRDBaselines"]
