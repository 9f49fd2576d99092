"""Would MLflow's asynchronous logging take the metrics' cost off a run? CPU and wall time of the
process that logs one tracked default run's worth of metric values, synchronously and with
``log_batch(..., synchronous=False)`` (MLflow's queue and writer thread), waiting for the writes.

    .venv/bin/python benchmarks/async_logging.py [--values 950] [--repeats 7] [--json]

Both modes write into one temporary sqlite store, alternated, medians. The asynchronous writer is a
thread of the same process: what it saves the training thread it spends itself, under the GIL
(docs/performance.md, "Tracking overhead").
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=950, help="metric values per run (the default run logs ~950)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = MlflowClient(f"sqlite:///{tempfile.mkdtemp(prefix='forgetlab-async-bench-')}/mlflow.db")
    experiment = client.create_experiment("benchmark")

    def log(synchronous: bool) -> tuple[float, float, float]:
        run_id = client.create_run(experiment).info.run_id
        metrics = [Metric(f"acc/task_{i % 13}", 0.5, 1_000 + i, i) for i in range(args.values)]
        cpu, wall = time.process_time(), time.perf_counter()
        operation = client.log_batch(run_id, metrics=metrics, synchronous=synchronous)
        returned = time.perf_counter() - wall  # how long the caller (the training loop) waited
        if operation is not None:
            operation.wait()
        return time.process_time() - cpu, time.perf_counter() - wall, returned

    log(True), log(False)  # warm-up: the schema, and the asynchronous writer's thread
    samples = {"sync": [], "async": []}
    for _ in range(args.repeats):
        samples["sync"].append(log(True))
        samples["async"].append(log(False))
    result = {mode: {"cpu_s": statistics.median(s[0] for s in runs), "wall_s": statistics.median(s[1] for s in runs),
                     "caller_waits_s": statistics.median(s[2] for s in runs)} for mode, runs in samples.items()}
    result["values"] = args.values
    for mode in ("sync", "async"):
        r = result[mode]
        print(f"{mode:>5}: CPU {r['cpu_s'] * 1e3:6.1f} ms, wall {r['wall_s'] * 1e3:6.1f} ms, "
              f"the caller waits {r['caller_waits_s'] * 1e3:6.1f} ms for {args.values} values")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
