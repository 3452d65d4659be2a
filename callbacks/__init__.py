"""Floor 2: what watches a run (MLflow artifacts, plots, the logged model)."""

from callbacks.composition_model import LogCompositionModel
from callbacks.mlflow_run import MLflowRunInfo, MLflowSaveConfig
from callbacks.polymorph_metrics import PolymorphMetrics
from callbacks.mve_baselines import HomogenizationBaselines, LocalizationBaselines
from callbacks.regression_plots import RegressionPlots

__all__ = ["HomogenizationBaselines", "LocalizationBaselines", "LogCompositionModel", "MLflowRunInfo", "MLflowSaveConfig",
           "PolymorphMetrics", "RegressionPlots"]
