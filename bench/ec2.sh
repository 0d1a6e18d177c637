#!/usr/bin/env bash
# EC2 DescribeNetworkInterfaces and DescribeVpcs against moto_server on this machine, same
# run: see the docstring of bench/ec2.py.
# BENCH_DURATION (seconds per wrk run, default 10), BENCH_ROUNDS (3), BENCH_TASKS (5);
# BERTH_BIN runs a given build.
set -euo pipefail
exec python3 "$(dirname "$0")/ec2.py" "$@"
