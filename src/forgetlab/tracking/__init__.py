"""MLflow tracking: the run contract (docs/tracking.md) and the Hydra sweep callback."""
