#!/usr/bin/env bash
# The service controller at scale (issue 19): one pass over BENCH_SERVICES services
# (default 5000) of BENCH_TASKS tasks each (default 10) on BENCH_INSTANCES instances
# (default 500), when nothing needs doing, and the CPU the controller's own loop costs an
# idle cluster over BENCH_IDLE_SECONDS (default 10). Targets: a pass under 50 ms, an idle
# cluster under 1% of a CPU. Prints the machine's load before and after. There is no peer
# that runs ECS's service scheduler; the targets are absolute. See
# crates/control-plane/examples/controller_pass.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/bench}"
cargo build --release -q -p control-plane --example controller_pass
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for round in 1 2 3; do
    echo "--- round $round"
    "$CARGO_TARGET_DIR/release/examples/controller_pass" 2>/dev/null
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
