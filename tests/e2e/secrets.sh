#!/usr/bin/env bash
# Secrets and configuration with the real `aws` CLI. SSM Parameter Store: put-parameter
# (String, StringList, SecureString), versions and labels, get-parameter(s) with selectors
# and by ARN, get-parameters-by-path, describe-parameters, history, tags, delete; the
# SecureString value is nowhere in the data dir in clear; kill -9 and start again, and the
# acknowledged versions are there.
# (Secrets Manager and tasks that use secrets come in later sections.)
#
# Usage: tests/e2e/secrets.sh [path/to/berth]   (default: target/debug/berth)
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
secret="pw-$RANDOM-$RANDOM-s3cret"

step "aws ssm put-parameter (String, StringList, SecureString) and overwrite"
[[ "$(aws ssm put-parameter --name /web/db/host --type String --value db1 --query Version --output text)" == 1 ]] \
    || fail "the first version is not 1"
[[ "$(aws ssm put-parameter --name /web/db/host --value db2 --overwrite --query Version --output text)" == 2 ]] \
    || fail "the overwrite is not version 2"
aws ssm put-parameter --name /web/hosts --type StringList --value a,b,c --tags Key=team,Value=web >/dev/null
aws ssm put-parameter --name /web/db/password --type SecureString --value "$secret" >/dev/null
aws ssm put-parameter --name /web/db/host --type String --value x 2>"$data/err" && fail "a second create was accepted"
grep -q ParameterAlreadyExists "$data/err" || fail "a second create was not ParameterAlreadyExists"
aws ssm put-parameter --name awsreserved --type String --value x 2>"$data/err" && fail "a reserved name was accepted"
grep -q ValidationException "$data/err" || fail "a reserved name was not a ValidationException"

step "aws ssm get-parameter: latest, :version, :label, by ARN, with and without decryption"
[[ "$(aws ssm get-parameter --name /web/db/host --query Parameter.Value --output text)" == db2 ]] || fail "latest"
[[ "$(aws ssm get-parameter --name /web/db/host:1 --query Parameter.Value --output text)" == db1 ]] || fail ":1"
aws ssm label-parameter-version --name /web/db/host --parameter-version 1 --labels stable >/dev/null
[[ "$(aws ssm get-parameter --name /web/db/host:stable --query Parameter.Value --output text)" == db1 ]] || fail ":stable"
arn="$(aws ssm get-parameter --name /web/db/password --query Parameter.ARN --output text)"
[[ "$arn" == arn:aws:ssm:us-east-1:*:parameter/web/db/password ]] || fail "unexpected ARN $arn"
[[ "$(aws ssm get-parameter --name "$arn" --with-decryption --query Parameter.Value --output text)" == "$secret" ]] \
    || fail "the SecureString did not decrypt"
sealed="$(aws ssm get-parameter --name /web/db/password --query Parameter.Value --output text)"
[[ "$sealed" != "$secret" ]] || fail "without --with-decryption the value came back in clear"
aws ssm get-parameter --name /web/db/host:7 2>"$data/err" && fail "a missing version was found"
grep -q ParameterVersionNotFound "$data/err" || fail "a missing version was not ParameterVersionNotFound"

step "aws ssm get-parameters / get-parameters-by-path / describe-parameters / get-parameter-history"
got="$(aws ssm get-parameters --names /web/db/host /nope --query 'InvalidParameters' --output text)"
[[ "$got" == /nope ]] || fail "get-parameters' invalid list was '$got'"
got="$(aws ssm get-parameters-by-path --path /web --query 'Parameters[].Name' --output text)"
[[ "$got" == /web/hosts ]] || fail "one level of /web was '$got'"
got="$(aws ssm get-parameters-by-path --path /web --recursive --query 'length(Parameters)' --output text)"
[[ "$got" == 3 ]] || fail "all of /web was $got parameters"
got="$(aws ssm describe-parameters --parameter-filters Key=Type,Values=SecureString --query 'Parameters[0].KeyId' --output text)"
[[ "$got" == alias/aws/ssm ]] || fail "the SecureString's key id was '$got'"
got="$(aws ssm get-parameter-history --name /web/db/host --query 'Parameters[].Value' --output text)"
[[ "$got" == $'db1\tdb2' ]] || fail "history was '$got'"
[[ "$(aws ssm list-tags-for-resource --resource-type Parameter --resource-id /web/hosts --query 'TagList[0].Value' --output text)" == web ]] \
    || fail "tags not kept"

step "the SecureString is nowhere in the data dir in clear"
grep -rqa --exclude=server.log -- db2 "$data" || fail "the search does not find a String value in the data dir"
grep -rqa --exclude=server.log -- "$secret" "$data" && fail "the data dir holds the value in clear"
grep -qa -- "$secret" "$data/server.log" && fail "the server log holds the value"

step "kill -9 and start again: every acknowledged version is there"
aws ssm put-parameter --name /web/db/password --value "$secret-2" --overwrite >/dev/null
berth_kill
berth_start --no-agent
[[ "$(aws ssm get-parameter --name /web/db/password --with-decryption --query Parameter.Value --output text)" == "$secret-2" ]] \
    || fail "the last version is gone after kill -9"
[[ "$(aws ssm get-parameter --name /web/db/password:1 --with-decryption --query Parameter.Value --output text)" == "$secret" ]] \
    || fail "version 1 is gone after kill -9"
aws ssm delete-parameters --names /web/db/host /web/hosts >/dev/null
aws ssm delete-parameter --name /web/db/password
[[ "$(aws ssm describe-parameters --query 'length(Parameters)' --output text)" == 0 ]] || fail "parameters left after delete"
echo "OK"
