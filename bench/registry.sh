#!/usr/bin/env bash
# Registry benchmark, Berth's registry against Debian's docker-registry (distribution 2.8),
# push and pull with skopeo: see the docstring of bench/registry.py. BENCH_ROUNDS (default 3)
# sets the rounds of the 4 x 64 MiB image, BENCH_BIG=0 skips the 1 GiB layer scenario.
set -euo pipefail
exec python3 "$(dirname "$0")/registry.py" "$@"
