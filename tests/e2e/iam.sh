#!/usr/bin/env bash
# Identity with the real `aws` CLI, as a team sets it up: roles for tasks with their trust
# and permission policies (an AWS-managed one attached by ARN), a CI user whose key may
# deploy one service only, a group whose members read with its policy, and a role session.
# Each answer is checked.
#
# Usage: tests/e2e/iam.sh [path/to/berth]   (default: target/debug/berth)
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

step "berth up"
berth_start
account="$(aws sts get-caller-identity --query Account --output text)"

step "aws iam create-role for tasks, with its trust policy from a file"
cat >"$data/ecs-tasks-trust.json" <<'JSON'
{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Allow", "Principal": { "Service": "ecs-tasks.amazonaws.com" }, "Action": "sts:AssumeRole" }
  ]
}
JSON
arn="$(aws iam create-role --role-name web-task --assume-role-policy-document "file://$data/ecs-tasks-trust.json" --query Role.Arn --output text)"
[[ "$arn" == "arn:aws:iam::$account:role/web-task" ]] || fail "role ARN $arn"
aws iam create-role --role-name ecsTaskExecutionRole --assume-role-policy-document "file://$data/ecs-tasks-trust.json" >/dev/null
principal="$(aws iam get-role --role-name web-task --query 'Role.AssumeRolePolicyDocument.Statement[0].Principal.Service' --output text)"
[[ "$principal" == ecs-tasks.amazonaws.com ]] || fail "the trust policy came back as '$principal'"

step "aws iam put-role-policy and attach-role-policy (AWS-managed, by ARN)"
aws iam put-role-policy --role-name web-task --policy-name read-params \
    --policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:GetParameters","Resource":"*"}]}'
aws iam attach-role-policy --role-name ecsTaskExecutionRole \
    --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy
attached="$(aws iam list-attached-role-policies --role-name ecsTaskExecutionRole --query 'AttachedPolicies[0].PolicyName' --output text)"
[[ "$attached" == AmazonECSTaskExecutionRolePolicy ]] || fail "attached: $attached"
actions="$(aws iam get-policy-version --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy --version-id v1 --query 'PolicyVersion.Document.Statement[0].Action' --output text)"
grep -q "ecr:GetAuthorizationToken" <<<"$actions" || fail "the managed policy's actions: $actions"

step "aws iam get-account-authorization-details (the CLI pages it and decodes the documents)"
details="$(aws iam get-account-authorization-details --filter Role --query 'RoleDetailList[?RoleName==`web-task`].RolePolicyList[0].PolicyDocument.Statement[0].Action' --output text)"
[[ "$details" == ssm:GetParameters ]] || fail "authorization details: $details"
if out="$(aws iam put-role-policy --role-name web-task --policy-name bad --policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}' 2>&1)"; then
    fail "a policy without actions was accepted"
fi
grep -q MalformedPolicyDocument <<<"$out" || fail "expected MalformedPolicyDocument: $out"

step "a CI user whose key may deploy one service"
aws ecs create-cluster --cluster-name prod >/dev/null
aws ecs register-task-definition --cli-input-json "file://$here/simplehttp.json" >/dev/null
for s in web api; do
    aws ecs create-service --cluster prod --service-name "$s" --task-definition simplehttp --desired-count 0 >/dev/null
done
cat >"$data/deploy-web-only.json" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Allow", "Action": ["ecs:UpdateService", "ecs:DescribeServices"],
      "Resource": "arn:aws:ecs:us-east-1:$account:service/prod/web" },
    { "Effect": "Allow", "Action": ["ecs:List*", "ecs:DescribeClusters"], "Resource": "*" }
  ]
}
JSON
policy="$(aws iam create-policy --policy-name deploy-web-only --policy-document "file://$data/deploy-web-only.json" --query Policy.Arn --output text)"
aws iam create-user --user-name ci >/dev/null
aws iam attach-user-policy --user-name ci --policy-arn "$policy"
read -r ci_id ci_secret < <(aws iam create-access-key --user-name ci --query 'AccessKey.[AccessKeyId, SecretAccessKey]' --output text)
as_ci() { AWS_ACCESS_KEY_ID="$ci_id" AWS_SECRET_ACCESS_KEY="$ci_secret" aws "$@"; }
me="$(as_ci sts get-caller-identity --query Arn --output text)"
[[ "$me" == "arn:aws:iam::$account:user/ci" ]] || fail "the CI key is '$me'"
as_ci ecs update-service --cluster prod --service web --desired-count 0 >/dev/null || fail "ci could not deploy web"
if out="$(as_ci ecs update-service --cluster prod --service api --desired-count 0 2>&1)"; then fail "ci deployed api"; fi
grep -q "AccessDeniedException" <<<"$out" || fail "expected AccessDeniedException: $out"
grep -q "is not authorized to perform: ecs:UpdateService on resource: arn:aws:ecs:us-east-1:$account:service/prod/api" <<<"$out" || fail "message: $out"
if out="$(as_ci ecs delete-cluster --cluster prod 2>&1)"; then fail "ci deleted the cluster"; fi
grep -q "AccessDeniedException" <<<"$out" || fail "expected AccessDeniedException: $out"

step "aws sts assume-role: a role session with the role's permissions"
cat >"$data/ci-trust.json" <<JSON
{ "Version": "2012-10-17",
  "Statement": [{ "Effect": "Allow", "Principal": { "AWS": "arn:aws:iam::$account:user/ci" }, "Action": "sts:AssumeRole" }] }
JSON
aws iam create-role --role-name reader --assume-role-policy-document "file://$data/ci-trust.json" >/dev/null
aws iam attach-role-policy --role-name reader --policy-arn arn:aws:iam::aws:policy/ReadOnlyAccess
read -r s_id s_secret s_token < <(as_ci sts assume-role --role-arn "arn:aws:iam::$account:role/reader" --role-session-name nightly \
    --query 'Credentials.[AccessKeyId, SecretAccessKey, SessionToken]' --output text)
as_role() { AWS_ACCESS_KEY_ID="$s_id" AWS_SECRET_ACCESS_KEY="$s_secret" AWS_SESSION_TOKEN="$s_token" aws "$@"; }
me="$(as_role sts get-caller-identity --query Arn --output text)"
[[ "$me" == "arn:aws:sts::$account:assumed-role/reader/nightly" ]] || fail "the session is '$me'"
[[ "$(as_role ecs describe-services --cluster prod --services api --query 'services[0].status' --output text)" == ACTIVE ]] || fail "the reader cannot read"
if out="$(as_role ecs create-cluster --cluster-name nope 2>&1)"; then fail "the reader created a cluster"; fi
grep -q "AccessDeniedException" <<<"$out" || fail "expected AccessDeniedException: $out"

step "aws iam groups: a member acts with its group's policies"
aws iam create-user --user-name viewer >/dev/null
read -r v_id v_secret < <(aws iam create-access-key --user-name viewer --query 'AccessKey.[AccessKeyId, SecretAccessKey]' --output text)
as_viewer() { AWS_ACCESS_KEY_ID="$v_id" AWS_SECRET_ACCESS_KEY="$v_secret" aws "$@"; }
if out="$(as_viewer ecs list-clusters 2>&1)"; then fail "a user without policies listed clusters"; fi
grep -q "AccessDeniedException" <<<"$out" || fail "expected AccessDeniedException: $out"
garn="$(aws iam create-group --group-name readers --path /eng/ --query Group.Arn --output text)"
[[ "$garn" == "arn:aws:iam::$account:group/eng/readers" ]] || fail "group ARN $garn"
aws iam attach-group-policy --group-name readers --policy-arn arn:aws:iam::aws:policy/ReadOnlyAccess
aws iam add-user-to-group --group-name readers --user-name viewer
[[ "$(aws iam get-group --group-name readers --query 'Users[0].UserName' --output text)" == viewer ]] || fail "get-group lists no viewer"
[[ "$(aws iam list-groups-for-user --user-name viewer --query 'Groups[0].GroupName' --output text)" == readers ]] || fail "list-groups-for-user"
# Policies apply as the key's next request is authorized: IAM's own delay is not copied.
[[ "$(as_viewer ecs describe-services --cluster prod --services api --query 'services[0].status' --output text)" == ACTIVE ]] || fail "the member cannot read"
if out="$(as_viewer ecs create-cluster --cluster-name nope 2>&1)"; then fail "the read-only member created a cluster"; fi
grep -q "AccessDeniedException" <<<"$out" || fail "expected AccessDeniedException: $out"
if out="$(aws iam delete-group --group-name readers 2>&1)"; then fail "a group with members was deleted"; fi
grep -q DeleteConflict <<<"$out" || fail "expected DeleteConflict: $out"

step "kill -9 and restart: users, groups, keys, roles, policies and sessions are still there"
berth_kill
berth_start
as_ci ecs update-service --cluster prod --service web --desired-count 0 >/dev/null || fail "the CI key is lost"
as_viewer ecs list-clusters >/dev/null || fail "the group membership is lost"
me="$(as_role sts get-caller-identity --query Arn --output text)"
[[ "$me" == "arn:aws:sts::$account:assumed-role/reader/nightly" ]] || fail "the session is lost: '$me'"

step "clean up: a user with keys and policies is not deleted until they are"
if out="$(aws iam delete-user --user-name ci 2>&1)"; then fail "a user with keys was deleted"; fi
grep -q DeleteConflict <<<"$out" || fail "expected DeleteConflict: $out"
aws iam delete-access-key --user-name ci --access-key-id "$ci_id"
aws iam detach-user-policy --user-name ci --policy-arn "$policy"
aws iam delete-user --user-name ci
aws iam delete-policy --policy-arn "$policy"
aws iam remove-user-from-group --group-name readers --user-name viewer
if out="$(as_viewer ecs list-clusters 2>&1)"; then fail "a former member still lists clusters"; fi
aws iam detach-group-policy --group-name readers --policy-arn arn:aws:iam::aws:policy/ReadOnlyAccess
aws iam delete-group --group-name readers
aws iam delete-access-key --user-name viewer --access-key-id "$v_id"
aws iam delete-user --user-name viewer
echo "PASS: iam"
