#!/usr/bin/env bash
# The foundation walkthrough with the real `aws` CLI: start Berth from a clean data dir,
# create a cluster, register a task definition, describe it; then kill -9 the server,
# start it again, and check that everything is still there.
#
# Usage: tests/e2e/foundation.sh [path/to/berth]   (default: target/debug/berth)
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

step "berth up (first start creates the account and key)"
berth_start
grep -q "Created account" "$data/server.log" || fail "first start did not announce the new account"
[[ "$(stat -c %a "$data/berth.db")" == 600 ]] || fail "the database is not owner-only"
[[ "$(stat -c %a "$data")" == 700 ]] || fail "the data dir is not owner-only"

step "aws sts get-caller-identity (the first call of Terraform, the CDK, Ansible)"
account="$(sed -n 's/^Created account \([0-9]*\) .*/\1/p' "$data/server.log" | head -1)"
got="$(aws sts get-caller-identity --query '[Account, Arn, UserId]' --output text)"
[[ "$got" == "$account"$'\t'"arn:aws:iam::$account:root"$'\t'"$account" ]] || fail "get-caller-identity answered '$got'"
aws sts assume-role --role-arn "arn:aws:iam::$account:role/x" --role-session-name session 2>"$data/err" && fail "assume-role answered"
grep -q AccessDenied "$data/err" || fail "assume-role of a missing role: $(cat "$data/err")"

step "aws ecs create-cluster"
arn="$(aws ecs create-cluster --cluster-name demo --query cluster.clusterArn --output text)"
[[ "$arn" == arn:aws:ecs:us-east-1:*:cluster/demo ]] || fail "unexpected cluster ARN $arn"

step "aws ecs register-task-definition --cli-input-json"
rev="$(aws ecs register-task-definition --cli-input-json "file://$here/simplehttp.json" --query taskDefinition.revision --output text)"
[[ "$rev" == 1 ]] || fail "expected revision 1, got $rev"

step "aws ecs describe-task-definition"
image="$(aws ecs describe-task-definition --task-definition simplehttp --query 'taskDefinition.containerDefinitions[0].image' --output text)"
[[ "$image" == simplehttp:latest ]] || fail "unexpected image $image"
tag="$(aws ecs describe-task-definition --task-definition simplehttp --include TAGS --query 'tags[0].value' --output text)"
[[ "$tag" == simplehttp ]] || fail "tags not returned"

step "errors come back in AWS's shape"
if out="$(aws ecs describe-task-definition --task-definition missing 2>&1)"; then fail "describing a missing task definition succeeded"; fi
grep -q "ClientException" <<<"$out" || fail "expected ClientException, got: $out"
if out="$(AWS_SECRET_ACCESS_KEY=wrong aws ecs list-clusters 2>&1)"; then fail "a wrong secret was accepted"; fi
grep -q "InvalidSignatureException" <<<"$out" || fail "expected InvalidSignatureException, got: $out"

step "kill -9 and restart: everything acknowledged is still there"
berth_kill
berth_start
[[ "$(aws ecs describe-clusters --clusters demo --query 'clusters[0].status' --output text)" == ACTIVE ]] || fail "cluster lost"
[[ "$(aws ecs describe-task-definition --task-definition simplehttp:1 --query taskDefinition.status --output text)" == ACTIVE ]] || fail "task definition lost"
rev="$(aws ecs register-task-definition --cli-input-json "file://$here/simplehttp.json" --query taskDefinition.revision --output text)"
[[ "$rev" == 2 ]] || fail "revision numbering did not continue: $rev"

step "SIGTERM stops berth cleanly"
kill -TERM "$pid"
wait "$pid" || fail "berth exited non-zero on SIGTERM"
pid=""

echo "e2e foundation: 1 passed, 0 failed"
