#!/usr/bin/env bash
# Secrets and configuration against peers on this machine: SSM GetParameter against
# moto_server (and, to come, RunTask with secrets): see the docstring of bench/secrets.py.
# BENCH_DURATION (seconds per wrk run, default 10), BENCH_ROUNDS (3); BERTH_BIN runs a given build.
set -euo pipefail
exec python3 "$(dirname "$0")/secrets.py" "$@"
