#!/usr/bin/env bash
# Authorization cost benchmark: see the docstring of bench/authz.py.
set -euo pipefail
exec python3 "$(dirname "$0")/authz.py" "$@"
