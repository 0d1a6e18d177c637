#!/usr/bin/env bash
# The calls deployment tools repeat (DescribeServices, ListTagsForResource, TagResource)
# against moto_server on this machine: see the docstring of bench/tools.py.
# BENCH_DURATION (seconds per wrk run, default 10), BENCH_ROUNDS (3); BERTH_BIN runs a given build.
set -euo pipefail
exec python3 "$(dirname "$0")/tools.py" "$@"
