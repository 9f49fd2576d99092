"""forgetlab: catastrophic forgetting under per-sample backprop, BPTT and RTRL, in NumPy."""

import os

# No network at run time: MLflow 3 would otherwise send usage telemetry from every run and report.
# setdefault keeps a user's explicit choice.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
