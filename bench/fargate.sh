#!/usr/bin/env bash
# Fargate task start benchmark, RunTask --launch-type FARGATE -> RUNNING against docker run
# -d: see the docstring of bench/fargate.py. BENCH_SAMPLES (default 15), BENCH_POLL_MS (5).
set -euo pipefail
exec python3 "$(dirname "$0")/fargate.py" "$@"
