"""Reading forgetlab runs back from MLflow: ``load`` (runs and artifacts), ``aggregate`` (conditions,
metrics, seed statistics), ``figures`` and ``report`` (the CLI: ``python analysis/report.py``)."""
