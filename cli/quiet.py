"""Known third-party warnings and adverts that say nothing about a run, silenced by their exact messages.

Each filter names one message of one library (nothing is ignored wholesale); a new warning still shows.
Imported by ``cli/train.py`` before Lightning and MLflow, so filters are in place when the messages are emitted.
"""

from __future__ import annotations

import logging
import os
import warnings

#: (warning message regex, why it is noise)
WARNINGS = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", "lightning 2.6 calling a torch API renamed in 2.10"),
    (r"Precision bf16-mixed is not supported by the model summary", "lightning: only the summary's MB estimate"),
    (r"Attribute 'net' is an instance of `nn.Module` and is already saved",
     "lightning: the net is an init argument, so LightningCLI can build it from the config"),
    (r"LightningCLI's args parameter is intended to run from within Python",
     "lightning: reproduce, cv and search build each run's CLI from Python while their own options are in sys.argv"),
    (r"Signal navigation axes must be named 'x' and/or 'y'",
     "kikuchipy: the baselines index plain pattern stacks, which have no step sizes to compare with the map's"),
)
#: {logger name: message prefixes dropped}
LOG_MESSAGES = {
    "lightning.pytorch.utilities.rank_zero": ("💡 Tip:",),
    "mlflow.pyfunc": ("Passing a Python object as `python_model`", "Inferring model signature"),
}


class _DropPrefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def silence() -> None:
    """Install the filters (idempotent) and turn off MLflow's artifact download bars."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for pattern, _why in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, prefixes in LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefixes) for f in logger.filters):
            logger.addFilter(_DropPrefixes(prefixes))
