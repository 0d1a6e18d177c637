#!/usr/bin/env bash
# EventBridge PutRule + PutTargets + ListTargetsByRule, Berth against moto_server: see the
# docstring of bench/events.py. BENCH_DURATION (seconds per wrk run, default 10), BENCH_ROUNDS (3).
set -euo pipefail
exec python3 "$(dirname "$0")/events.py" "$@"
