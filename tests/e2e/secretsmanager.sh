#!/usr/bin/env bash
# Secrets Manager with the real `aws` CLI: create-secret, get-secret-value by name, ARN
# and partial ARN, put-secret-value moving AWSCURRENT and AWSPREVIOUS, list-secrets with
# a filter, delete-secret and restore-secret; then kill -9 the server, start it again,
# and check the value is still there and that no file of the data dir holds it in clear.
#
# Usage: tests/e2e/secretsmanager.sh [path/to/berth]   (default: target/debug/berth)
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

step "aws secretsmanager create-secret"
arn="$(aws secretsmanager create-secret --name web/db --description 'web database' \
    --secret-string '{"user":"app","password":"e2e-s3cret-71c4"}' --tags Key=team,Value=web --query ARN --output text)"
[[ "$arn" =~ ^arn:aws:secretsmanager:us-east-1:[0-9]{12}:secret:web/db-[A-Za-z0-9]{6}$ ]] || fail "unexpected ARN $arn"
aws secretsmanager create-secret --name web/db --secret-string x 2>"$data/err" && fail "a second web/db was created"
grep -q ResourceExistsException "$data/err" || fail "a second web/db was not a ResourceExistsException"

step "aws secretsmanager get-secret-value by name, ARN and partial ARN"
for id in web/db "$arn" "${arn%-*}"; do
    got="$(aws secretsmanager get-secret-value --secret-id "$id" --query SecretString --output text)"
    [[ "$got" == '{"user":"app","password":"e2e-s3cret-71c4"}' ]] || fail "get-secret-value $id answered '$got'"
done

step "aws secretsmanager put-secret-value: the new version is AWSCURRENT, the old AWSPREVIOUS"
aws secretsmanager put-secret-value --secret-id web/db --secret-string 'e2e-second-71c4' >/dev/null
[[ "$(aws secretsmanager get-secret-value --secret-id web/db --query SecretString --output text)" == e2e-second-71c4 ]] \
    || fail "the new value is not current"
got="$(aws secretsmanager get-secret-value --secret-id web/db --version-stage AWSPREVIOUS --query SecretString --output text)"
[[ "$got" == *e2e-s3cret-71c4* ]] || fail "AWSPREVIOUS answered '$got'"
[[ "$(aws secretsmanager list-secret-version-ids --secret-id web/db --query 'length(Versions)')" == 2 ]] || fail "not two versions"

step "aws secretsmanager list-secrets --filters"
aws secretsmanager create-secret --name other --secret-string o >/dev/null
got="$(aws secretsmanager list-secrets --filters Key=name,Values=web/ --query 'SecretList[].Name' --output text)"
[[ "$got" == web/db ]] || fail "list-secrets answered '$got'"
got="$(aws secretsmanager list-secrets --filters Key=tag-value,Values='!web' --query 'SecretList[].Name' --output text)"
[[ "$got" == other ]] || fail "a negated filter answered '$got'"

step "aws secretsmanager delete-secret / restore-secret"
aws secretsmanager delete-secret --secret-id other --recovery-window-in-days 7 >/dev/null
aws secretsmanager get-secret-value --secret-id other 2>"$data/err" && fail "a deleted secret was read"
grep -q InvalidRequestException "$data/err" || fail "reading a deleted secret was not an InvalidRequestException"
aws secretsmanager restore-secret --secret-id other >/dev/null
[[ "$(aws secretsmanager get-secret-value --secret-id other --query SecretString --output text)" == o ]] || fail "not restored"
aws secretsmanager delete-secret --secret-id other --force-delete-without-recovery >/dev/null
aws secretsmanager describe-secret --secret-id other 2>"$data/err" && fail "a force-deleted secret is described"
grep -q ResourceNotFoundException "$data/err" || fail "a force-deleted secret was not a ResourceNotFoundException"

step "kill -9 and start again: the value is there, and in clear nowhere in the data dir"
berth_kill
if grep -rqa 'e2e-s3cret-71c4\|e2e-second-71c4' "$data"; then fail "a secret value is in clear in the data dir"; fi
berth_start --no-agent
[[ "$(aws secretsmanager get-secret-value --secret-id web/db --query SecretString --output text)" == e2e-second-71c4 ]] \
    || fail "after kill -9 the value is gone"
echo "OK"
