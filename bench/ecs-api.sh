#!/usr/bin/env bash
# ECS API benchmark, Berth against moto_server: see the docstring of bench/ecs_api.py.
# BENCH_DURATION (seconds per wrk run, default 10) sets the length of each run.
set -euo pipefail
exec python3 "$(dirname "$0")/ecs_api.py" "$@"
