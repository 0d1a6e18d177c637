#!/usr/bin/env bash
# awslogs shipping against Docker's json-file driver, print-to-readable latency, and (when
# present) the 10-million-event FilterLogEvents run: see the docstring of bench/logs.py.
# BENCH_SECONDS (default 30), BENCH_LATENCY_SECONDS (20), BENCH_SKIP_FILTER=1 skips the filter run.
set -euo pipefail
exec python3 "$(dirname "$0")/logs.py" "$@"
