#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and lints,
# runs every Rust test (unit and integration, in parallel) and the end-to-end scripts
# with the real aws CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# One build from scratch: incremental caches would only cost time and disk. The disk left is
# printed before and after the build, because CI's machine once ran out of it.
export CARGO_INCREMENTAL=0
df -h . | tail -1 | awk '{print "=== disk: " $4 " free"}'

echo "=== cargo fmt --check"
cargo fmt --all -- --check
echo "=== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "=== cargo build"
cargo build --workspace --all-targets --quiet
df -h . | tail -1 | awk '{print "=== disk: " $4 " free after the build"}'

echo "=== cargo nextest (unit and integration tests)"
# The integration tests mostly wait on servers, so more of them than cores run at once.
cargo nextest run --workspace --test-threads 6 --no-fail-fast

echo "=== end-to-end: the walkthroughs with the aws CLI"
tests/e2e/foundation.sh target/debug/berth
tests/e2e/iam.sh target/debug/berth
tests/e2e/ec2.sh target/debug/berth
tests/e2e/tasks.sh target/debug/berth
tests/e2e/registry.sh target/debug/berth
tests/e2e/elb.sh target/debug/berth
tests/e2e/services.sh target/debug/berth
tests/e2e/logs.sh target/debug/berth
tests/e2e/secrets.sh target/debug/berth
tests/e2e/secretsmanager.sh target/debug/berth
tests/e2e/events.sh target/debug/berth
tests/e2e/walkthrough.sh target/debug/berth
tests/e2e/tools.sh target/debug/berth
