"""Names of what a training run writes to MLflow (docs/tracking.md), shared by the writer in
``forgetlab.tracking`` and the readers in ``analysis/``."""

# The update-resolution probe (eval.probe_every > 0), under the run's ``eval/`` artifacts.
UPDATE_PROBE_FILE = "update_probe.npz"
