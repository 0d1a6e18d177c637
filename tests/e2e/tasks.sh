#!/usr/bin/env bash
# The tasks walkthrough with the real `aws` CLI: `berth up` registers this host's Docker
# engine into cluster `default`; a task definition with the test image; run-task; the
# tasks-running waiter; curl the dynamic host port from describe-tasks; stop-task; the
# tasks-stopped waiter.
#
# Usage: tests/e2e/tasks.sh [path/to/berth]   (default: target/debug/berth)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
berth="${1:-$root/target/debug/berth}"
data="$(mktemp -d)"
# shellcheck source=lib.sh
source "$here/lib.sh"
cleanup() {
    berth_kill
    # The containers of this run carry its cluster's ARN, which names its fresh account.
    if [[ -n "${cluster_arn:-}" ]]; then
        docker ps -aq --filter "label=com.amazonaws.ecs.cluster=$cluster_arn" | xargs -r docker rm -f >/dev/null
    fi
    rm -rf "$data"
}
trap cleanup EXIT

step "build the test image"
image="$(cargo run -q -p testkit --bin test-image)"

step "berth up (with its local agent)"
berth_start

step "aws ecs list-container-instances (the agent registers)"
for _ in $(seq 1 100); do
    n="$(aws ecs list-container-instances --query 'length(containerInstanceArns)' --output text 2>/dev/null || echo 0)"
    [[ "$n" == 1 ]] && break
    sleep 0.2
done
[[ "$n" == 1 ]] || fail "the local agent did not register"
cluster_arn="$(aws ecs describe-clusters --clusters default --query 'clusters[0].clusterArn' --output text)"

step "register-task-definition, run-task, wait tasks-running"
aws ecs register-task-definition --family simplehttp --container-definitions \
    "[{\"name\":\"web\",\"image\":\"$image\",\"memory\":32,\"command\":[\"serve\",\"--port\",\"8080\"],\"portMappings\":[{\"containerPort\":8080}]}]" >/dev/null
task="$(aws ecs run-task --task-definition simplehttp --query 'tasks[0].taskArn' --output text)"
aws ecs wait tasks-running --tasks "$task"

step "describe-tasks shows the host port; curl it"
port="$(aws ecs describe-tasks --tasks "$task" --query 'tasks[0].containers[0].networkBindings[0].hostPort' --output text)"
body="$(curl -fsS "http://127.0.0.1:$port/")" || fail "nothing answered on host port $port"
grep -q hello <<<"$body" || fail "unexpected answer: $body"

step "stop-task, wait tasks-stopped"
aws ecs stop-task --task "$task" --reason done >/dev/null
aws ecs wait tasks-stopped --tasks "$task"
code="$(aws ecs describe-tasks --tasks "$task" --query 'tasks[0].stopCode' --output text)"
[[ "$code" == UserInitiated ]] || fail "unexpected stopCode $code"

echo "e2e tasks: 1 passed, 0 failed"
