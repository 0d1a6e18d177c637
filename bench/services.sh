#!/usr/bin/env bash
# Service controller benchmark: UpdateService -> steady state for a 10-task service against
# the sum of its container start times, and a killed container's replacement against its
# own start time: see the docstring of bench/services.py. BENCH_TASKS (default 10),
# BENCH_ROUNDS (default 5), BENCH_SAMPLES (default 10), BENCH_POLL_MS (default 10).
set -euo pipefail
exec python3 "$(dirname "$0")/services.py" "$@"
