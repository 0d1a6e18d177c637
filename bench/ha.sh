#!/usr/bin/env bash
# Durable writes on PostgreSQL against SQLite, and reads spread over three replicas: see
# the docstring of bench/ha.py.
# BENCH_DURATION (seconds per wrk run, default 10) and BENCH_ROUNDS (default 3).
set -euo pipefail
exec python3 "$(dirname "$0")/ha.py" "$@"
