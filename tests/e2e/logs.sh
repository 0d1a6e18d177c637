#!/usr/bin/env bash
# CloudWatch Logs with the real `aws` CLI: a group and a stream, events put and read back
# (get-log-events, filter-log-events), retention and tags; then kill -9 the server, start
# it again, and check that the acknowledged events are still there. Then the user's
# journey of issue 14: a Fargate task definition with awslogs as the console writes it,
# run-task, the task's stream, get/filter-log-events, and `berth logs tail`.
#
# Usage: tests/e2e/logs.sh [path/to/berth]   (default: target/debug/berth)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
berth="${1:-$here/../../target/debug/berth}"
data="$(mktemp -d)"
# shellcheck source=lib.sh
source "$here/lib.sh"
vpc="10.252"
cleanup() {
    berth_kill
    docker ps -aq --filter "label=com.amazonaws.ecs.task-definition-family=web-fargate" | xargs -r docker rm -f >/dev/null 2>&1
    for n in $(docker network ls -q --filter label=berth.managed=true); do
        [[ "$(docker network inspect "$n" --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}')" == "$vpc".* ]] \
            && docker network rm "$n" >/dev/null 2>&1
    done
    rm -rf "$data"
}
trap cleanup EXIT

berth_start --no-agent
now=$(($(date +%s) * 1000))

step "aws logs create-log-group / create-log-stream"
aws logs create-log-group --log-group-name /ecs/web --tags team=web
aws logs create-log-stream --log-group-name /ecs/web --log-stream-name ecs/web/1
arn="$(aws logs describe-log-groups --log-group-name-prefix /ecs/ --query 'logGroups[0].arn' --output text)"
[[ "$arn" == arn:aws:logs:us-east-1:*:log-group:/ecs/web:* ]] || fail "unexpected group ARN $arn"

step "aws logs put-log-events"
aws logs put-log-events --log-group-name /ecs/web --log-stream-name ecs/web/1 \
    --log-events "timestamp=$now,message=INFO started" "timestamp=$((now + 1)),message=ERROR disk full" >/dev/null

step "aws logs get-log-events / filter-log-events"
got="$(aws logs get-log-events --log-group-name /ecs/web --log-stream-name ecs/web/1 --start-from-head --query 'events[].message' --output text)"
[[ "$got" == $'INFO started\tERROR disk full' ]] || fail "get-log-events answered '$got'"
got="$(aws logs filter-log-events --log-group-name /ecs/web --filter-pattern '"ERROR"' --query 'events[].message' --output text)"
[[ "$got" == "ERROR disk full" ]] || fail "filter-log-events answered '$got'"

step "retention and tags"
aws logs put-retention-policy --log-group-name /ecs/web --retention-in-days 1
[[ "$(aws logs describe-log-groups --query 'logGroups[0].retentionInDays' --output text)" == 1 ]] || fail "retention not kept"
aws logs put-retention-policy --log-group-name /ecs/web --retention-in-days 2 2>"$data/err" && fail "2 days accepted"
grep -q InvalidParameterException "$data/err" || fail "a bad retention was not an InvalidParameterException"
[[ "$(aws logs list-tags-log-group --log-group-name /ecs/web --query tags.team --output text)" == web ]] || fail "tags not kept"

step "kill -9 and start again: the events are there"
berth_kill
berth_start --no-agent
got="$(aws logs get-log-events --log-group-name /ecs/web --log-stream-name ecs/web/1 --start-from-head --query 'events[].message' --output text)"
[[ "$got" == $'INFO started\tERROR disk full' ]] || fail "after kill -9 get-log-events answered '$got'"
berth_kill

step "berth up with its agents; a Fargate task definition with awslogs (group /ecs/web-fargate, prefix ecs)"
image="$(cargo run -q -p testkit --bin test-image)"
berth_start --vpc-cidr "$vpc.0.0/16"
cat >"$data/web-fargate.json" <<JSON
{"family": "web-fargate", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc", "cpu": "256", "memory": "512",
 "containerDefinitions": [{"name": "web", "image": "$image", "essential": true,
   "command": ["print", "20", "--every-ms", "50"],
   "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web-fargate",
     "awslogs-region": "us-east-1", "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}}}]}
JSON
aws ecs create-cluster --cluster-name default >/dev/null
aws ecs register-task-definition --cli-input-json "file://$data/web-fargate.json" >/dev/null
subnet="$(aws ec2 describe-subnets --query 'Subnets[0].SubnetId' --output text)"

step "aws ecs run-task --launch-type FARGATE; wait tasks-stopped (the container prints 20 lines and exits)"
task=""
for _ in $(seq 1 100); do
    # Fargate capacity is berth up's second local agent; it may still be registering.
    task="$(aws ecs run-task --task-definition web-fargate --launch-type FARGATE \
        --network-configuration "awsvpcConfiguration={subnets=[$subnet]}" --query 'tasks[0].taskArn' --output text)"
    [[ "$task" == arn:* ]] && break
    sleep 0.2
done
[[ "$task" == arn:* ]] || fail "no Fargate task was placed"
aws ecs wait tasks-stopped --tasks "$task"
id="${task##*/}"

step "aws logs describe-log-streams / get-log-events / filter-log-events of the task's stream"
streams="$(aws logs describe-log-streams --log-group-name /ecs/web-fargate --query 'logStreams[].logStreamName' --output text)"
[[ "$streams" == "ecs/web/$id" ]] || fail "describe-log-streams answered '$streams', not ecs/web/$id"
got="$(aws logs get-log-events --log-group-name /ecs/web-fargate --log-stream-name "ecs/web/$id" --start-from-head \
    --query 'length(events)' --output text)"
[[ "$got" == 20 ]] || fail "get-log-events found $got events, not 20"
got="$(aws logs filter-log-events --log-group-name /ecs/web-fargate --filter-pattern '"line 2"' \
    --query 'events[].message' --output text | tr '\t' ' ')"
[[ "$got" == "line 2 line 20" ]] || fail "filter-log-events answered '$got'"

step "berth logs tail /ecs/web-fargate --format short"
tail_out="$("$berth" logs tail /ecs/web-fargate --data-dir "$data" --format short)"
[[ "$(wc -l <<<"$tail_out")" == 20 && "$tail_out" == *"line 20" ]] || fail "berth logs tail printed: $tail_out"
aws logs put-retention-policy --log-group-name /ecs/web-fargate --retention-in-days 1
echo "OK"
