#!/usr/bin/env bash
# Connection hardening benchmark: a slowloris-style attack (silent and slow-header
# connections beyond the connection bound) against Berth's API server and against nginx
# with its defaults, in the same run, while a prober checks health. See the docstring of
# bench/connections.py. BENCH_SILENT (4200), BENCH_SLOW (50), BENCH_MAX_CONNECTIONS (4096),
# BENCH_LIMIT (90 s); BERTH_BIN to use an already built berth.
set -euo pipefail
exec python3 "$(dirname "$0")/connections.py" "$@"
