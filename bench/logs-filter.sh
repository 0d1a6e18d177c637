#!/usr/bin/env bash
# FilterLogEvents over a 10-million-event log group, Berth against grep -c over the same
# lines: see the docstring of bench/logs_filter.py. BENCH_EVENTS, BENCH_STREAMS,
# BENCH_CLIENTS, BENCH_BATCH and BENCH_RUNS change the scale; BERTH_BIN another build.
set -euo pipefail
exec python3 "$(dirname "$0")/logs_filter.py" "$@"
