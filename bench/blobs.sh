#!/usr/bin/env bash
# Registry blobs on S3-compatible storage (s3s-fs) against the filesystem, push and pull with
# skopeo through two Berths in the same run: see the docstring of bench/blobs.py.
# BENCH_ROUNDS (default 3) sets the rounds of the 4 x 64 MiB image.
set -euo pipefail
exec python3 "$(dirname "$0")/blobs.py" "$@"
