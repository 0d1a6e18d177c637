#!/usr/bin/env bash
# Load balancer benchmark: wrk through Berth's load balancer and through HAProxy (Debian's
# haproxy) in front of the same backends (Debian's nginx, keep-alive), in the same run;
# then failed requests while the targets are replaced under load. See the docstring of
# bench/elb.py. BENCH_ROUNDS (default 3), BENCH_SECONDS (default 10), BENCH_CONNECTIONS
# (default 64), BENCH_BACKEND (nginx, the default, or simplehttp).
set -euo pipefail
exec python3 "$(dirname "$0")/elb.py" "$@"
