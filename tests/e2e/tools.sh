#!/usr/bin/env bash
# The tools users run against ECS, against a fresh Berth: Ansible's AWS collections
# (amazon.aws and community.aws, from PyPI's `ansible` package, which bundles them) and
# ecs-deploy (PyPI `ecs-deploy`). Each step is checked for its result with the aws CLI
# (describe-services, describe-tasks, curl through the load balancer), not only for its
# exit code.
#
# The tools live in a venv of their own, outside the repository so that `cargo clean` or a
# fresh clone does not cost the download again: $BERTH_TOOLS_VENV, by default
# ~/.cache/berth/tools-venv (created on first use, from PyPI).
#
# Two steps can be left out (to try a build without the parts they need):
#   BERTH_TOOLS_EC2=0     ansible's ec2_vpc_net_info (EC2 DescribeVpcAttribute)
#   BERTH_TOOLS_EVENTS=0  ecs-deploy cron (EventBridge, AWSEvents)
#
# Usage: tests/e2e/tools.sh [path/to/berth]   (default: target/debug/berth). Needs Docker
# and the network of PyPI on first use.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
berth="${1:-$root/target/debug/berth}"
data="$(mktemp -d)"
# shellcheck source=lib.sh
source "$here/lib.sh"
cluster_arns=()
cleanup() {
    berth_kill
    for c in "${cluster_arns[@]}"; do
        docker ps -aq --filter "label=com.amazonaws.ecs.cluster=$c" | xargs -r docker rm -f >/dev/null
    done
    rm -rf "$data"
}
trap cleanup EXIT

venv="${BERTH_TOOLS_VENV:-$HOME/.cache/berth/tools-venv}"
# Versions pinned so that a new release of a tool changes the suite only when chosen.
tools=(ansible==12.3.0 ecs-deploy==1.17.0 boto3==1.44.18)
if ! "$venv/bin/python" -c 'import ansible_collections.community.aws, ecs_deploy, boto3' 2>/dev/null; then
    step "install ${tools[*]} into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "${tools[@]}"
fi
export PATH="$venv/bin:$PATH"
export ANSIBLE_PYTHON_INTERPRETER="$venv/bin/python" ANSIBLE_LOCALHOST_WARNING=false \
    ANSIBLE_INVENTORY_UNPARSED_WARNING=false ANSIBLE_NOCOLOR=1 ANSIBLE_COLLECTIONS_PATH="$venv/lib/ansible_collections_none"
export PYTHONWARNINGS=ignore

pool="127.$((RANDOM % 100 + 101)).$((RANDOM % 256)).0/24"

step "build the test image"
image="$(cargo run -q -p testkit --bin test-image)"

step "berth up (with its local agent)"
berth_start --lb-address-pool "$pool"
for _ in $(seq 1 100); do
    n="$(aws ecs list-container-instances --query 'length(containerInstanceArns)' --output text 2>/dev/null || echo 0)"
    [[ "$n" == 1 ]] && break
    sleep 0.2
done
[[ "$n" == 1 ]] || fail "the local agent did not register"

# Runs the playbook's phases named by $1 (a tag), with the variables every phase needs.
listener_port=8088
play() {
    ansible-playbook -i localhost, "$here/tools/playbook.yml" --tags "$1" \
        -e "test_image=$image listener_port=$listener_port task_file=$data/task tg_arn=${tg_arn:-}" \
        >"$data/ansible-$1.log" 2>&1 || { tail -60 "$data/ansible-$1.log" >&2; fail "ansible-playbook --tags $1"; }
}
svc() { aws ecs describe-services --cluster default --services web --query "services[0].$1" --output text; }
wait_svc() {
    local query="$1" want="$2" got=""
    for _ in $(seq 1 600); do
        got="$(svc "$query" 2>/dev/null || true)"
        [[ "$got" == "$want" ]] && return
        sleep 0.2
    done
    fail "waited for services[0].$query == $want; last saw $got"
}
# Waits (two minutes at most) until the service has one deployment and runs its desired
# count; on failure shows the service's deployments and events.
stable() {
    local got=""
    for _ in $(seq 1 600); do
        got="$(svc '[length(deployments),runningCount,desiredCount]' 2>/dev/null | tr '\t' ' ' || true)"
        read -r n running desired <<<"$got"
        [[ "$n" == 1 && "$running" == "$desired" ]] && return
        sleep 0.2
    done
    aws ecs describe-services --cluster default --services web \
        --query 'services[0].{deployments:deployments,events:events[0:8].message}' >&2 || true
    fail "the service did not become stable: deployments, running, desired = $got"
}
td_arn() { aws ecs describe-task-definition --task-definition "$1" --query 'taskDefinition.taskDefinitionArn' --output text; }
# Answers of the load balancer until one carries `greeting=$1`; every answer after the
# service is stable must carry it.
curl_lb() {
    local url="http://$dns:$listener_port/" body=""
    for _ in $(seq 1 150); do
        body="$(curl -fsS --max-time 2 "$url" 2>/dev/null || true)"
        [[ "$body" == *"greeting=$1"* ]] && return
        sleep 0.2
    done
    fail "the load balancer did not answer greeting=$1 (last: $body)"
}

step "ansible: ECR repository, cluster with tags, two task definitions, target group, load balancer, service"
play create
cluster_arns+=("$(aws ecs describe-clusters --clusters default --query 'clusters[0].clusterArn' --output text)")
[[ "$(aws ecr describe-repositories --repository-names tools-repo --query 'repositories[0].imageScanningConfiguration.scanOnPush' --output text)" == True ]] \
    || fail "ecs_ecr: no repository with scan on push"
[[ "$(aws ecs list-tags-for-resource --resource-arn "${cluster_arns[0]}" --query "tags[?key=='team'].value" --output text)" == tools ]] \
    || fail "ecs_tag: the cluster has no team tag"
[[ "$(aws ecs list-task-definitions --family-prefix tools-web --query 'length(taskDefinitionArns)' --output text)" == 2 ]] \
    || fail "ecs_taskdefinition: expected 2 revisions"
tg_arn="$(aws elbv2 describe-target-groups --names tools-tg --query 'TargetGroups[0].TargetGroupArn' --output text)"
lb_arn="$(aws elbv2 describe-load-balancers --names tools-alb --query 'LoadBalancers[0].LoadBalancerArn' --output text)"
dns="$(aws elbv2 describe-load-balancers --names tools-alb --query 'LoadBalancers[0].DNSName' --output text)"
[[ "$(aws elbv2 describe-listeners --load-balancer-arn "$lb_arn" --query 'Listeners[0].DefaultActions[0].TargetGroupArn' --output text)" == "$tg_arn" ]] \
    || fail "elb_application_lb: the listener does not forward to tools-tg"
stable
[[ "$(svc runningCount)" == 2 ]] || fail "ecs_service: expected 2 running tasks"
[[ "$(svc taskDefinition)" == "$(td_arn tools-web:1)" ]] || fail "ecs_service: not on revision 1"
curl_lb one

step "ansible: the service moves to revision 2"
play update
wait_svc taskDefinition "$(td_arn tools-web:2)"
stable
curl_lb two

step "ansible: the service scales to 3"
play scale
wait_svc runningCount 3

step "ansible: ecs_task run and stop"
play task
task="$(cat "$data/task")"
read -r status started_by < <(aws ecs describe-tasks --cluster default --tasks "$task" --query 'tasks[0].[desiredStatus,startedBy]' --output text)
[[ "$status" == STOPPED && "$started_by" == ansible ]] || fail "ecs_task: the task is $status, started by $started_by"
[[ "$(aws ecs list-tags-for-resource --resource-arn "$task" --query "tags[?key=='purpose'].value" --output text)" == one-off ]] \
    || fail "ecs_task: the task's tags are missing"

if [[ "${BERTH_TOOLS_EC2:-1}" == 1 ]]; then
    step "ansible: ec2_vpc_net_info"
    play vpc_net_info
else
    echo "--- skipped: ansible ec2_vpc_net_info (BERTH_TOOLS_EC2=0)"
fi

step "ecs-deploy deploy: a new environment value becomes revision 3 and is rolled out"
ecs deploy default web --env web GREETING three --timeout 180 >"$data/ecs-deploy.log" 2>&1 \
    || { cat "$data/ecs-deploy.log" >&2; fail "ecs deploy"; }
[[ "$(svc taskDefinition)" == "$(td_arn tools-web:3)" ]] || fail "ecs deploy: the service is not on revision 3"
[[ "$(svc 'length(deployments)')" == 1 && "$(svc runningCount)" == 3 ]] || fail "ecs deploy: the deployment did not finish"
curl_lb three

step "ecs-deploy scale: down to 1"
ecs scale default web 1 --timeout 120 >"$data/ecs-scale.log" 2>&1 || { cat "$data/ecs-scale.log" >&2; fail "ecs scale"; }
[[ "$(svc desiredCount)" == 1 && "$(svc runningCount)" == 1 ]] || fail "ecs scale: expected 1 of 1"

step "ecs-deploy run: a one-off task of revision 1 with an environment override"
ecs run default tools-web:1 1 --env web GREETING ran >"$data/ecs-run.log" 2>&1 || { cat "$data/ecs-run.log" >&2; fail "ecs run"; }
# ecs-deploy starts its tasks "by ECS Deploy" (with a space, which ECS allows).
ran="$(aws ecs list-tasks --cluster default --started-by 'ECS Deploy' --query 'taskArns' --output text)"
[[ "$(wc -w <<<"$ran")" == 1 ]] || fail "ecs run: expected one task started by ECS Deploy, found: $ran"
aws ecs wait tasks-running --cluster default --tasks "$ran"
override="$(aws ecs describe-tasks --cluster default --tasks "$ran" \
    --query "tasks[0].overrides.containerOverrides[0].environment[?name=='GREETING'].value" --output text)"
[[ "$override" == ran ]] || fail "ecs run: the task's override is '$override'"
aws ecs stop-task --cluster default --task "$ran" >/dev/null

step "ecs-deploy deploy --rollback: a revision whose container exits is rolled back"
if ecs deploy default web --command web "exit 3" --timeout 30 --rollback >"$data/ecs-rollback.log" 2>&1; then
    cat "$data/ecs-rollback.log" >&2
    fail "ecs deploy of a failing revision succeeded"
fi
grep -qi "rolling back" "$data/ecs-rollback.log" || { cat "$data/ecs-rollback.log" >&2; fail "ecs deploy did not roll back"; }
wait_svc taskDefinition "$(td_arn tools-web:3)"
stable
curl_lb three

if [[ "${BERTH_TOOLS_EVENTS:-1}" == 1 ]]; then
    step "ecs-deploy cron: a scheduled task's target moves to a new revision"
    aws events put-rule --name tools-nightly --schedule-expression 'rate(1 day)' >/dev/null
    aws events put-targets --rule tools-nightly --targets \
        "Id=1,Arn=${cluster_arns[0]},RoleArn=arn:aws:iam::000000000000:role/ecsEventsRole,EcsParameters={TaskDefinitionArn=$(td_arn tools-web:1),TaskCount=1}" >/dev/null
    ecs cron default tools-web tools-nightly --env web GREETING cron >"$data/ecs-cron.log" 2>&1 \
        || { cat "$data/ecs-cron.log" >&2; fail "ecs cron"; }
    target_td="$(aws events list-targets-by-rule --rule tools-nightly --query 'Targets[0].EcsParameters.TaskDefinitionArn' --output text)"
    [[ "$target_td" != "$(td_arn tools-web:1)" ]] || fail "ecs cron: the rule's target kept revision 1"
else
    echo "--- skipped: ecs-deploy cron (BERTH_TOOLS_EVENTS=0)"
fi

step "ansible: delete the service"
play delete
[[ "$(svc status)" == INACTIVE ]] || fail "ecs_service absent: the service is $(svc status)"
[[ -z "$(aws ecs list-tasks --cluster default --service-name web --query 'taskArns' --output text)" ]] \
    || fail "ecs_service absent: tasks still running"

echo "e2e tools: 1 passed, 0 failed"
