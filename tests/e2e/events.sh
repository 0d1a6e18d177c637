#!/usr/bin/env bash
# EventBridge scheduled tasks with the real `aws` CLI, as the ECS console and
# `ecs-deploy cron` set them up: put-rule with a schedule, put-targets with EcsParameters
# and an Input of RunTask overrides, list-targets-by-rule; the rule fires and a task
# started by `events-rule/<name>` runs on this host's engine; refusals as EventBridge
# answers them; disable-rule; kill -9 and restart keep the rule and its targets;
# delete-rule needs --force while targets remain.
#
# Usage: tests/e2e/events.sh [path/to/berth]   (default: target/debug/berth)
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
for _ in $(seq 1 100); do
    n="$(aws ecs list-container-instances --query 'length(containerInstanceArns)' --output text 2>/dev/null || echo 0)"
    [[ "$n" == 1 ]] && break
    sleep 0.2
done
[[ "$n" == 1 ]] || fail "the local agent did not register"
cluster_arn="$(aws ecs describe-clusters --clusters default --query 'clusters[0].clusterArn' --output text)"
account="$(aws sts get-caller-identity --query Account --output text)"
aws ecs register-task-definition --family nightly --container-definitions \
    "[{\"name\":\"job\",\"image\":\"$image\",\"memory\":32,\"command\":[\"serve\",\"--port\",\"8080\"]}]" >/dev/null

step "aws events put-rule / put-targets / list-targets-by-rule"
rule_arn="$(aws events put-rule --name nightly --schedule-expression 'rate(1 minute)' --query RuleArn --output text)"
[[ "$rule_arn" == "arn:aws:events:us-east-1:$account:rule/nightly" ]] || fail "unexpected rule ARN $rule_arn"
cat >"$data/targets.json" <<JSON
[{"Id": "job", "Arn": "$cluster_arn", "RoleArn": "arn:aws:iam::$account:role/ecsEventsRole",
  "Input": "{\"containerOverrides\":[{\"name\":\"job\",\"command\":[\"sleep\"]}]}",
  "EcsParameters": {"TaskDefinitionArn": "arn:aws:ecs:us-east-1:$account:task-definition/nightly", "TaskCount": 1,
                    "LaunchType": "EC2", "Group": "cron"}}]
JSON
failed="$(aws events put-targets --rule nightly --targets "file://$data/targets.json" --query FailedEntryCount --output text)"
[[ "$failed" == 0 ]] || fail "put-targets failed $failed entries"
got="$(aws events list-targets-by-rule --rule nightly --query 'Targets[0].EcsParameters.Group' --output text)"
[[ "$got" == cron ]] || fail "list-targets-by-rule answered '$got'"
got="$(aws events list-rule-names-by-target --target-arn "$cluster_arn" --query 'RuleNames[0]' --output text)"
[[ "$got" == nightly ]] || fail "list-rule-names-by-target answered '$got'"

step "refusals: bad schedules, delete-rule with targets"
aws events put-rule --name bad --schedule-expression 'rate(1 minutes)' 2>"$data/err" && fail "rate(1 minutes) was accepted"
grep -q ValidationException "$data/err" || fail "a bad schedule was not a ValidationException"
aws events put-rule --name bad --schedule-expression 'cron(0 12 * * * *)' 2>"$data/err" && fail "a cron with two * days was accepted"
aws events delete-rule --name nightly 2>"$data/err" && fail "a rule with targets was deleted"
grep -q ValidationException "$data/err" || fail "deleting a rule with targets was not a ValidationException"

step "the rule fires: a task started by events-rule/nightly, in group cron, with the Input's command"
task=""
for _ in $(seq 1 100); do
    task="$(aws ecs list-tasks --started-by events-rule/nightly --query 'taskArns[0]' --output text)"
    [[ "$task" != None && -n "$task" ]] && break
    sleep 1
done
[[ "$task" != None && -n "$task" ]] || fail "no task was started by the rule within 100 s"
aws events disable-rule --name nightly
aws ecs wait tasks-running --tasks "$task"
got="$(aws ecs describe-tasks --tasks "$task" --query 'tasks[0].[group, overrides.containerOverrides[0].command[0]]' --output text)"
[[ "$got" == "cron	sleep" ]] || fail "the task's group and command were '$got'"
aws ecs stop-task --task "$task" >/dev/null

step "kill -9 and restart: the rule and its target are kept, still disabled"
berth_kill
berth_start
got="$(aws events describe-rule --name nightly --query '[State, ScheduleExpression]' --output text)"
[[ "$got" == "DISABLED	rate(1 minute)" ]] || fail "after restart describe-rule answered '$got'"
[[ "$(aws events list-targets-by-rule --rule nightly --query 'length(Targets)')" == 1 ]] || fail "the target is gone"

step "delete-rule --force"
aws events delete-rule --name nightly --force
aws events describe-rule --name nightly 2>"$data/err" && fail "a deleted rule is described"
grep -q ResourceNotFoundException "$data/err" || fail "a deleted rule was not a ResourceNotFoundException"

echo "e2e events: 1 passed, 0 failed"
