"""forgetlab: catastrophic forgetting under per-sample backprop, BPTT and RTRL, in NumPy."""

import os

# No network at run time: MLflow 3 would otherwise send usage telemetry from every run and report.
# setdefault keeps a user's explicit choice.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# The console shows forgetlab's lines: no MLflow progress bar for each artifact read back (run_figures).
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

__version__ = "0.1.0"
