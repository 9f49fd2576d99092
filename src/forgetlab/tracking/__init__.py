"""Recording runs in MLflow (``mlflow_run``) and answering whether a config still needs one
(``resume``), with a client that survives concurrent writers (``store``) and dead-process detection
(``liveness``). The names it writes are in ``forgetlab.contract``."""
