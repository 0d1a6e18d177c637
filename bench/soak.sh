#!/usr/bin/env bash
# Three replicas on PostgreSQL under continuous writes while the leader is killed or cut
# off again and again: see the docstring of bench/soak.py. SOAK_EVENTS (default 30);
# BERTH_BIN runs an existing build. Needs root (iptables).
set -euo pipefail
exec python3 "$(dirname "$0")/soak.py" "$@"
