#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and lints,
# runs every Rust test (unit and integration, in parallel) and the end-to-end scripts
# with the real aws CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "=== cargo fmt --check"
cargo fmt --all -- --check
echo "=== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "=== cargo build"
cargo build --workspace --all-targets --quiet

echo "=== cargo nextest (unit and integration tests)"
# The integration tests mostly wait on servers, so more of them than cores run at once.
cargo nextest run --workspace --test-threads 6 --no-fail-fast

echo "=== end-to-end: the walkthroughs with the aws CLI"
tests/e2e/foundation.sh target/debug/berth
tests/e2e/tasks.sh target/debug/berth
tests/e2e/registry.sh target/debug/berth
tests/e2e/elb.sh target/debug/berth
tests/e2e/services.sh target/debug/berth
tests/e2e/logs.sh target/debug/berth
tests/e2e/walkthrough.sh target/debug/berth
