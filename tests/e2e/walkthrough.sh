#!/usr/bin/env bash
# The user's walkthrough (../shared/walkthrough.md, steps 0-5) from a clean data dir, with
# the real `aws` and `docker` CLIs and curl:
#   0. berth up (control plane, registry, load balancer, local agent); eval "$(berth env)"
#   1. ECR repository with scan on push; docker login, tag, push 1.0 and latest;
#      describe-images, describe-image-scan-findings
#   2. cluster `demo`; a `berth agent` with ECS_CLUSTER=demo joins it
#   3. a task definition of the pushed image; run-task; wait tasks-running; host port
#   4. load balancer, target group, listener on 80; a service of 2 tasks behind it;
#      wait services-stable; curl the DNSName
#   5. update-service to a new revision under continuous curl load: no request fails
#   6. a Fargate task (awsvpc, assignPublicIp=ENABLED) with no instance to manage, answering
#      at its own address
#
# Usage: tests/e2e/walkthrough.sh [path/to/berth]   (default: target/debug/berth). Needs
# root (or CAP_NET_BIND_SERVICE) for port 80, and Docker.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
berth="${1:-$root/target/debug/berth}"
data="$(mktemp -d)"
# shellcheck source=lib.sh
source "$here/lib.sh"
host=""
clusters=()
networks=()
agent_pid=""
load_pid=""
cleanup() {
    [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null
    [[ -n "$agent_pid" ]] && kill -9 "$agent_pid" 2>/dev/null
    berth_kill
    for arn in "${clusters[@]}"; do
        docker ps -aq --filter "label=com.amazonaws.ecs.cluster=$arn" | xargs -r docker rm -f >/dev/null 2>&1
    done
    # The subnets' Docker networks of this run (a later Berth with other subnet ids but
    # the same default VPC block could not create its own over them).
    for n in "${networks[@]}"; do docker network rm "$n" >/dev/null 2>&1; done
    if [[ -n "$host" ]]; then
        docker logout "$host" >/dev/null 2>&1 || true
        docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$host/" | xargs -r docker rmi >/dev/null 2>&1 || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT

# A block of loopback addresses of this run's own (another Berth may hold the default).
pool="127.$((RANDOM % 100 + 101)).$((RANDOM % 256)).0/24"

# Polls until `cmd` prints `want`.
wait_for() {
    local what="$1" want="$2" got=""
    shift 2
    for _ in $(seq 1 600); do
        got="$("$@" 2>/dev/null || true)"
        [[ "$got" == "$want" ]] && return
        sleep 0.2
    done
    fail "waited for $what == $want; last saw '$got'"
}

step "0. build the image; berth up from a clean data dir; eval \"\$(berth env)\""
image="$(cargo run -q -p testkit --bin test-image)"
berth_start --lb-address-pool "$pool"
host="${AWS_ENDPOINT_URL#http://}"

step "1. aws ecr create-repository --image-scanning-configuration scanOnPush=true"
uri="$(aws ecr create-repository --repository-name ecr-simplehttp --image-scanning-configuration scanOnPush=true \
    --query repository.repositoryUri --output text)"
aws ecr get-login-password | docker login --username AWS --password-stdin "$host" >/dev/null || fail "docker login"
docker tag "$image" "$uri:1.0"
docker tag "$image" "$uri:latest"
docker push -q "$uri:1.0" >/dev/null || fail "push 1.0"
docker push -q "$uri:latest" >/dev/null || fail "push latest"
tags="$(aws ecr describe-images --repository-name ecr-simplehttp --query 'imageDetails[0].imageTags' --output text | tr '\t' '\n' | sort | tr '\n' ' ')"
[[ "$tags" == "1.0 latest " ]] || fail "describe-images: tags '$tags'"
# The scan on push runs in the background; the test image has no package database, so
# it ends UNSUPPORTED_IMAGE (registry.sh checks real findings).
wait_for "scan status" UNSUPPORTED_IMAGE aws ecr describe-image-scan-findings --repository-name ecr-simplehttp \
    --image-id imageTag=1.0 --query imageScanStatus.status --output text

step "2. aws ecs create-cluster demo; ECS_CLUSTER=demo berth agent joins it"
clusters+=("$(aws ecs create-cluster --cluster-name demo --query cluster.clusterArn --output text)")
ECS_CLUSTER=demo ECS_DATADIR="$data/agent" "$berth" agent >>"$data/agent.log" 2>&1 &
agent_pid=$!
disown "$agent_pid"  # killed in cleanup, without the shell's "Killed" report
wait_for "instances in demo" 1 aws ecs list-container-instances --cluster demo --query 'length(containerInstanceArns)' --output text
ci="$(aws ecs list-container-instances --cluster demo --query 'containerInstanceArns[0]' --output text)"
wait_for "agent connected" True aws ecs describe-container-instances --cluster demo --container-instances "$ci" \
    --query 'containerInstances[0].agentConnected' --output text
ec2_id="$(aws ecs describe-container-instances --cluster demo --container-instances "$ci" --query 'containerInstances[0].ec2InstanceId' --output text)"

step "3. register-task-definition --cli-input-json (the pushed image); run-task; wait tasks-running"
td() {
    cat >"$data/simplehttp.json" <<EOF
{
  "family": "simplehttp",
  "containerDefinitions": [{
    "name": "web", "image": "$uri:$1", "memory": 32, "essential": true,
    "command": ["serve", "--port", "8080"],
    "portMappings": [{ "containerPort": 8080, "protocol": "tcp" }],
    "environment": [{ "name": "GREETING", "value": "$2" }]
  }]
}
EOF
    aws ecs register-task-definition --cli-input-json "file://$data/simplehttp.json" --query taskDefinition.revision --output text
}
[[ "$(td 1.0 one)" == 1 ]] || fail "first revision"
task="$(aws ecs run-task --cluster demo --task-definition simplehttp --launch-type EC2 --query 'tasks[0].taskArn' --output text)"
aws ecs wait tasks-running --cluster demo --tasks "$task"
port="$(aws ecs describe-tasks --cluster demo --tasks "$task" --query 'tasks[0].containers[0].networkBindings[0].hostPort' --output text)"
curl -fsS "http://127.0.0.1:$port/" | grep -q "greeting=one" || fail "the one-off task does not answer on its host port $port"
aws ecs stop-task --cluster demo --task "$task" >/dev/null

step "4. create-load-balancer, create-target-group, create-listener; create-service behind it"
read -r subnet_a subnet_b < <(aws ec2 describe-subnets --query 'Subnets[0:2].SubnetId' --output text)
vpc="$(aws ec2 describe-vpcs --query 'Vpcs[0].VpcId' --output text)"
lb="$(aws elbv2 create-load-balancer --name demo-alb --subnets "$subnet_a" "$subnet_b" --query 'LoadBalancers[0].LoadBalancerArn' --output text)"
dns="$(aws elbv2 describe-load-balancers --load-balancer-arns "$lb" --query 'LoadBalancers[0].DNSName' --output text)"
tg="$(aws elbv2 create-target-group --name simplehttp --protocol HTTP --port 80 --vpc-id "$vpc" \
    --health-check-path / --query 'TargetGroups[0].TargetGroupArn' --output text)"
aws elbv2 create-listener --load-balancer-arn "$lb" --protocol HTTP --port 80 \
    --default-actions "Type=forward,TargetGroupArn=$tg" >/dev/null
aws ecs create-service --cluster demo --service-name simplehttp --task-definition simplehttp \
    --desired-count 2 --launch-type EC2 \
    --load-balancers "targetGroupArn=$tg,containerName=web,containerPort=8080" >/dev/null
aws ecs wait services-stable --cluster demo --services simplehttp
# As on ECS, a stable service's targets may still be passing their first health checks.
healthy_targets() {
    aws elbv2 describe-target-health --target-group-arn "$tg" \
        --query "TargetHealthDescriptions[?TargetHealth.State=='healthy'].Target.Id" --output text | tr '\t' '\n' | sort -u
}
wait_for "the tasks of $ec2_id healthy in the target group" "$ec2_id" healthy_targets
[[ "$(aws elbv2 describe-target-health --target-group-arn "$tg" --query 'length(TargetHealthDescriptions)' --output text)" == 2 ]] \
    || fail "expected two targets"
curl -fsS "http://$dns/" | grep -q "greeting=one" || fail "curl http://$dns/ was not answered by the service"

step "5. update-service to a new revision under continuous curl load"
docker tag "$image" "$uri:2.0"
docker push -q "$uri:2.0" >/dev/null || fail "push 2.0"
[[ "$(td 2.0 two)" == 2 ]] || fail "second revision"
: >"$data/load.ok"
: >"$data/load.failed"
(
    while true; do
        if out="$(curl -sS --max-time 5 -w ' %{http_code}' "http://$dns/" 2>&1)" && [[ "$out" == *" 200" ]]; then
            echo "$out" >>"$data/load.ok"
        else
            echo "$out" >>"$data/load.failed"
        fi
    done
) &
load_pid=$!
sleep 1
aws ecs update-service --cluster demo --service simplehttp --task-definition simplehttp:2 >/dev/null
aws ecs wait services-stable --cluster demo --services simplehttp
# Traffic on the new tasks alone for a moment, then stop the load.
sleep 2
kill "$load_pid"
wait "$load_pid" 2>/dev/null || true
load_pid=""
ok="$(wc -l <"$data/load.ok")"
failed="$(wc -l <"$data/load.failed")"
echo "requests during the rolling update: $ok succeeded, $failed failed"
[[ "$failed" == 0 ]] || fail "requests failed during the rolling update: $(head -5 "$data/load.failed")"
grep -q "greeting=one" "$data/load.ok" || fail "the old revision never answered"
grep -q "greeting=two" "$data/load.ok" || fail "the new revision never answered"
curl -fsS "http://$dns/" | grep -q "greeting=two" || fail "the new revision does not answer"
# The steady state is said once the new deployment's tasks have been up 10 s.
for _ in $(seq 1 60); do
    events="$(aws ecs describe-services --cluster demo --services simplehttp --query 'services[0].events[*].message' --output text | tr '\t' '\n')"
    grep -q "has reached a steady state" <<<"$events" && break
    sleep 1
done
grep -q "has begun draining connections" <<<"$events" || fail "no draining event: $events"
grep -q "has reached a steady state" <<<"$events" || fail "no steady-state event"

step "6. Fargate: register-task-definition (FARGATE, awsvpc); run-task --launch-type FARGATE"
aws ecs register-task-definition --family simplehttp-fargate --requires-compatibilities FARGATE --network-mode awsvpc \
    --cpu 256 --memory 512 --container-definitions \
    "[{\"name\":\"web\",\"image\":\"$uri:2.0\",\"command\":[\"serve\",\"--port\",\"8080\"],\"portMappings\":[{\"containerPort\":8080}]}]" >/dev/null
networks+=("berth-$subnet_a")
fargate=""
for _ in $(seq 1 100); do
    # Fargate capacity is berth up's second local agent; it may still be registering.
    fargate="$(aws ecs run-task --cluster demo --task-definition simplehttp-fargate --launch-type FARGATE \
        --network-configuration "awsvpcConfiguration={subnets=[$subnet_a],assignPublicIp=ENABLED}" \
        --query 'tasks[0].taskArn' --output text)"
    [[ "$fargate" == arn:* ]] && break
    sleep 0.2
done
[[ "$fargate" == arn:* ]] || fail "no Fargate task was placed"
aws ecs wait tasks-running --cluster demo --tasks "$fargate"
[[ "$(aws ecs describe-tasks --cluster demo --tasks "$fargate" --query 'tasks[0].containerInstanceArn' --output text)" == None ]] \
    || fail "a Fargate task names a container instance"
ip="$(aws ecs describe-tasks --cluster demo --tasks "$fargate" \
    --query "tasks[0].attachments[0].details[?name=='privateIPv4Address'].value | [0]" --output text)"
curl -fsS --max-time 5 "http://$ip:8080/" | grep -q "greeting=" || fail "the Fargate task does not answer at $ip:8080"
aws ecs stop-task --cluster demo --task "$fargate" >/dev/null

echo "PASS: the walkthrough, steps 0-6"
