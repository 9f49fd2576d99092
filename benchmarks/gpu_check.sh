#!/usr/bin/env bash
# Every GPU check in one run, for a machine with one CUDA GPU and CuPy (docs/performance.md, "GPU"):
# the GPU tests (CuPy against NumPy, tests/test_backend.py -m gpu), then benchmarks/gpu.py --json.
#   OUT=gpu-check bash benchmarks/gpu_check.sh
# Python packages the machine lacks (Hydra, OmegaConf, array-api-compat) may be put as wheels in .whl/;
# MLflow is not needed (nothing is tracked).
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/forgetlab-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/forgetlab-site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_backend.py 2>&1 | tee "$OUT/tests.log"
timeout 330 python3 benchmarks/gpu.py --json "$@" > "$OUT/gpu.json" 2> >(tee "$OUT/bench.log" >&2)
