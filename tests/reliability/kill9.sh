#!/usr/bin/env bash
# Durability under kill -9: see the docstring of tests/reliability/kill9.py.
# Usage: tests/reliability/kill9.sh [path/to/berth] [--cycles 50] [--writers 8] [--seed N]
# The binary defaults to target/debug/berth (build it with `cargo build -p berth`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
berth="target/debug/berth"
if [[ $# -gt 0 && "$1" != -* ]]; then berth="$1"; shift; fi
[[ -x "$berth" ]] || { echo "kill9: no berth binary at $berth; run cargo build -p berth" >&2; exit 2; }
exec python3 "$here/kill9.py" --berth "$berth" "$@"
