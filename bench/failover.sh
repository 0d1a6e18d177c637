#!/usr/bin/env bash
# Control-plane failover on PostgreSQL, a standby against a restart: see bench/failover.py.
# BENCH_ROUNDS (default 3).
set -euo pipefail
exec python3 "$(dirname "$0")/failover.py" "$@"
