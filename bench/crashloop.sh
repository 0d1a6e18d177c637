#!/usr/bin/env bash
# Crash-loop benchmark: see the docstring of bench/crashloop.py.
set -euo pipefail
exec python3 "$(dirname "$0")/crashloop.py" "$@"
