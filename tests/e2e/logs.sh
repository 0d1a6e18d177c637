#!/usr/bin/env bash
# CloudWatch Logs with the real `aws` CLI: a group and a stream, events put and read back
# (get-log-events, filter-log-events), retention and tags; then kill -9 the server, start
# it again, and check that the acknowledged events are still there.
#
# Usage: tests/e2e/logs.sh [path/to/berth]   (default: target/debug/berth)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
berth="${1:-$here/../../target/debug/berth}"
data="$(mktemp -d)"
# shellcheck source=lib.sh
source "$here/lib.sh"
cleanup() {
    berth_kill
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
echo "OK"
