#!/usr/bin/env bash
# Secrets Manager GetSecretValue, Berth against moto_server: see the docstring of
# bench/secretsmanager.py. BENCH_DURATION (seconds per wrk run, default 10), BENCH_ROUNDS (3).
set -euo pipefail
exec python3 "$(dirname "$0")/secretsmanager.py" "$@"
