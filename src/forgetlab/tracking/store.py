"""An MLflow client that survives many concurrent writers on one sqlite store.

MLflow's SQLAlchemy store already waits 20 s on a locked sqlite file (``PRAGMA busy_timeout``), but
a transaction that must upgrade its read lock to a write lock while another process writes gets
"database is locked" at once: sqlite cannot wait there without risking a deadlock. MLflow then
rolls the transaction back and raises with error code TEMPORARILY_UNAVAILABLE, so the call can be
repeated safely. ``RetryingClient`` repeats such calls with jittered exponential backoff; every
other error is raised at once.
"""

from __future__ import annotations

import functools
import random
import time
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE, ErrorCode
from mlflow.tracking import MlflowClient

ATTEMPTS = 10
FIRST_DELAY_S = 0.05  # doubles each attempt: at most ~50 s spent waiting in all


def is_transient(error: BaseException) -> bool:
    """A store error that a repeated call can cure: a locked sqlite file or an unavailable store."""
    if not isinstance(error, MlflowException):
        return False
    unavailable = error.error_code == ErrorCode.Name(TEMPORARILY_UNAVAILABLE)
    return unavailable or "database is locked" in str(error)


class RetryingClient:
    """``MlflowClient(uri)`` whose method calls are retried on transient store errors."""

    def __init__(self, uri: str, *, attempts: int = ATTEMPTS, first_delay_s: float = FIRST_DELAY_S,
                 client: Any = None) -> None:
        self._client = client if client is not None else MlflowClient(uri)
        self._attempts, self._first_delay_s = attempts, first_delay_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(self._attempts):
                try:
                    return attr(*args, **kwargs)
                except MlflowException as error:
                    if not is_transient(error) or attempt == self._attempts - 1:
                        raise
                    time.sleep(self._first_delay_s * 2**attempt * (0.5 + random.random()))
            raise AssertionError("unreachable")

        return call
