#!/usr/bin/env bash
# The services walkthrough with the real `aws` CLI: `berth up` registers this host's Docker
# engine; create-service with a circuit breaker; wait services-stable; docker kill one of
# its containers and see it replaced; update-service to a new revision and wait again;
# kill -9 the control plane during a deployment and see it finish after the restart;
# drain the instance; delete-service --force and wait services-inactive.
#
# Usage: tests/e2e/services.sh [path/to/berth]   (default: target/debug/berth)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
berth="${1:-$root/target/debug/berth}"
data="$(mktemp -d)"
# shellcheck source=lib.sh
source "$here/lib.sh"
cleanup() {
    berth_kill
    if [[ -n "${cluster_arn:-}" ]]; then
        docker ps -aq --filter "label=com.amazonaws.ecs.cluster=$cluster_arn" | xargs -r docker rm -f >/dev/null
    fi
    rm -rf "$data"
}
trap cleanup EXIT

# Polls the service until a JMESPath query over describe-services prints `want`.
wait_for() {
    local query="$1" want="$2" got=""
    for _ in $(seq 1 600); do
        got="$(aws ecs describe-services --services web --query "$query" --output text 2>/dev/null || true)"
        [[ "$got" == "$want" ]] && return
        sleep 0.2
    done
    fail "waited for $query == $want; last saw $got"
}

running_ids() {
    aws ecs list-tasks --service-name web --desired-status RUNNING --query 'taskArns' --output text | tr '\t' '\n' | sort
}

step "build the test image"
image="$(cargo run -q -p testkit --bin test-image)"

step "berth up (with its local agent)"
berth_start
for _ in $(seq 1 100); do
    n="$(aws ecs list-container-instances --query 'length(containerInstanceArns)' --output text 2>/dev/null || echo 0)"
    [[ "$n" == 1 ]] && break
    sleep 0.2
done
[[ "$n" == 1 ]] || fail "the local agent did not register"
cluster_arn="$(aws ecs describe-clusters --clusters default --query 'clusters[0].clusterArn' --output text)"
instance="$(aws ecs list-container-instances --query 'containerInstanceArns[0]' --output text)"

step "two revisions of a task definition"
for greeting in one two; do
    aws ecs register-task-definition --family simplehttp --container-definitions \
        "[{\"name\":\"web\",\"image\":\"$image\",\"memory\":16,\"command\":[\"serve\",\"--port\",\"8080\"],\"environment\":[{\"name\":\"GREETING\",\"value\":\"$greeting\"}],\"portMappings\":[{\"containerPort\":8080}]}]" >/dev/null
done

step "create-service with a circuit breaker; wait services-stable"
aws ecs create-service --service-name web --task-definition simplehttp:1 --desired-count 3 \
    --deployment-configuration 'maximumPercent=200,minimumHealthyPercent=50,deploymentCircuitBreaker={enable=true,rollback=true}' >/dev/null
aws ecs wait services-stable --services web
[[ "$(running_ids | wc -l)" == 3 ]] || fail "expected 3 running tasks"
# The deployment completes (and the steady state is said) once its tasks have been up 10 s;
# the waiter above looks only at the counts.
steady=""
for _ in $(seq 1 60); do
    if aws ecs describe-services --services web --query 'services[0].events[*].message' --output text | tr '\t' '\n' \
        | grep -q 'has reached a steady state'; then steady=1; break; fi
    sleep 1
done
[[ -n "$steady" ]] || fail "no steady-state event"

step "docker kill one container; the service replaces it"
victim="$(running_ids | head -1)"
container="$(aws ecs describe-tasks --tasks "$victim" --query 'tasks[0].containers[0].runtimeId' --output text)"
docker kill "$container" >/dev/null
for _ in $(seq 1 300); do
    ids="$(running_ids)"
    if [[ "$(wc -l <<<"$ids")" == 3 ]] && ! grep -q "$victim" <<<"$ids"; then break; fi
    sleep 0.2
done
grep -q "$victim" <<<"$(running_ids)" && fail "the killed task was not replaced"
aws ecs wait services-stable --services web

step "update-service to revision 2; kill -9 the control plane mid-deployment; it finishes after the restart"
deployments="$(aws ecs update-service --service web --task-definition simplehttp:2 --query 'length(service.deployments)' --output text)"
[[ "$deployments" == 2 ]] || fail "expected a new PRIMARY deployment beside the old one"
berth_kill
berth_start
wait_for 'services[0].taskDefinition' "$(aws ecs describe-task-definition --task-definition simplehttp:2 --query 'taskDefinition.taskDefinitionArn' --output text)"
aws ecs wait services-stable --services web
[[ "$(running_ids | wc -l)" == 3 ]] || fail "expected exactly 3 running tasks after the deployment"
n="$(docker ps -q --filter "label=com.amazonaws.ecs.cluster=$cluster_arn" | wc -l)"
[[ "$n" == 3 ]] || fail "expected 3 containers, found $n"
port="$(aws ecs describe-tasks --tasks "$(running_ids | head -1)" --query 'tasks[0].containers[0].networkBindings[0].hostPort' --output text)"
curl -fsS "http://127.0.0.1:$port/" | grep -q 'greeting=two' || fail "the new revision does not answer"

step "bad input: delete-service without --force while scaled above 0"
if aws ecs delete-service --service web >/dev/null 2>"$data/err"; then fail "delete-service succeeded"; fi
grep -q InvalidParameterException "$data/err" || fail "unexpected error: $(cat "$data/err")"

step "drain the only instance: nothing can take its tasks, minimumHealthyPercent keeps 2 of 3"
aws ecs update-container-instances-state --container-instances "$instance" --status DRAINING >/dev/null
for _ in $(seq 1 300); do
    aws ecs describe-services --services web --query 'services[0].events[*].message' --output text | tr '\t' '\n' \
        | grep -q 'was unable to place a task' && break
    sleep 0.2
done
wait_for 'services[0].runningCount' 2
aws ecs update-container-instances-state --container-instances "$instance" --status ACTIVE >/dev/null
aws ecs wait services-stable --services web

step "delete-service --force; wait services-inactive"
aws ecs delete-service --service web --force >/dev/null
aws ecs wait services-inactive --services web
[[ -z "$(running_ids)" ]] || fail "tasks still running after delete"

echo "e2e services: 1 passed, 0 failed"
