#!/usr/bin/env bash
# Task start benchmark, Berth's RunTask -> RUNNING against docker run -d: see the docstring
# of bench/task_start.py. BENCH_SAMPLES (default 20) sets the samples of each side,
# BENCH_POLL_MS (default 5) how often DescribeTasks is polled.
set -euo pipefail
exec python3 "$(dirname "$0")/task_start.py" "$@"
