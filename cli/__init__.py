"""Floor 3: commands that compose a run from a config (train, predict, baseline, bench).

The one place of the MLflow tracking address's default: runs log to ``$MLFLOW_TRACKING_URI`` when it is
set (e.g. a ``make server``), else to the SQLite store ``mlruns/mlflow.db``. It is set here, on importing
any command, because Lightning's MLflow logger reads the variable when it is imported.
"""

import os

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
os.environ.setdefault("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
