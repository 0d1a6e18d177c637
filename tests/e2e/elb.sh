#!/usr/bin/env bash
# The load balancer walkthrough with the real `aws` CLI and curl: `berth up` (with its
# local agent, whose container instance is the target's instance id); the default VPC's
# subnets; create-load-balancer, create-target-group, create-listener on port 80; two plain
# `docker run`s of the test image with published ports registered as targets; the targets
# become healthy; curl the load balancer's DNSName reaches both; a deregistered target
# gets no more requests; after kill -9 and a restart the load balancer serves again.
#
# Usage: tests/e2e/elb.sh [path/to/berth]   (default: target/debug/berth). Needs root (or
# CAP_NET_BIND_SERVICE) for port 80, and Docker.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
berth="${1:-$root/target/debug/berth}"
data="$(mktemp -d)"
# shellcheck source=lib.sh
source "$here/lib.sh"
containers=()
cleanup() {
    berth_kill
    [[ ${#containers[@]} -gt 0 ]] && docker rm -f "${containers[@]}" >/dev/null 2>&1
    rm -rf "$data"
}
trap cleanup EXIT

# A block of loopback addresses of this run's own, so that another Berth on this machine
# (with the default block) does not hold the same addresses.
pool="127.$((RANDOM % 100 + 101)).$((RANDOM % 256)).0/24"

step "build the test image"
image="$(cargo run -q -p testkit --bin test-image)"

step "berth up (with its local agent)"
berth_start --lb-address-pool "$pool"
for _ in $(seq 1 100); do
    instance="$(aws ecs describe-container-instances --container-instances "$(aws ecs list-container-instances --query 'containerInstanceArns[0]' --output text 2>/dev/null)" \
        --query 'containerInstances[0].ec2InstanceId' --output text 2>/dev/null || true)"
    [[ "$instance" == i-* ]] && break
    sleep 0.2
done
[[ "$instance" == i-* ]] || fail "the local agent did not register"

step "aws ec2 describe-subnets: a default VPC with a subnet per zone"
read -r subnet_a subnet_b < <(aws ec2 describe-subnets --query 'Subnets[0:2].SubnetId' --output text)
vpc="$(aws ec2 describe-vpcs --filters Name=is-default,Values=true --query 'Vpcs[0].VpcId' --output text)"
[[ "$subnet_a" == subnet-* && "$subnet_b" == subnet-* && "$vpc" == vpc-* ]] || fail "no default VPC and subnets"

step "create-load-balancer, create-target-group, create-listener (port 80)"
lb="$(aws elbv2 create-load-balancer --name demo-alb --subnets "$subnet_a" "$subnet_b" --query 'LoadBalancers[0].LoadBalancerArn' --output text)"
dns="$(aws elbv2 describe-load-balancers --load-balancer-arns "$lb" --query 'LoadBalancers[0].DNSName' --output text)"
tg="$(aws elbv2 create-target-group --name simplehttp --protocol HTTP --port 80 --vpc-id "$vpc" \
    --health-check-path /health --health-check-interval-seconds 5 --health-check-timeout-seconds 2 --query 'TargetGroups[0].TargetGroupArn' --output text)"
aws elbv2 create-listener --load-balancer-arn "$lb" --protocol HTTP --port 80 \
    --default-actions "Type=forward,TargetGroupArn=$tg" >/dev/null

step "two containers with published ports, registered as targets of the instance"
ports=()
for greeting in blue green; do
    c="$(docker run -d -e GREETING=$greeting -p 127.0.0.1::8080 "$image" serve --port 8080)"
    containers+=("$c")
    ports+=("$(docker port "$c" 8080/tcp | head -1 | sed 's/.*://')")
done
aws elbv2 register-targets --target-group-arn "$tg" --targets "Id=$instance,Port=${ports[0]}" "Id=$instance,Port=${ports[1]}"

step "describe-target-health: both healthy"
for _ in $(seq 1 150); do
    healthy="$(aws elbv2 describe-target-health --target-group-arn "$tg" \
        --query "length(TargetHealthDescriptions[?TargetHealth.State=='healthy'])" --output text)"
    [[ "$healthy" == 2 ]] && break
    sleep 0.2
done
[[ "$healthy" == 2 ]] || fail "targets not healthy: $(aws elbv2 describe-target-health --target-group-arn "$tg")"

step "curl http://$dns/ reaches both containers"
seen=""
for _ in $(seq 1 10); do
    seen+="$(curl -fsS "http://$dns/")"
done
grep -q greeting=blue <<<"$seen" || fail "blue never answered: $seen"
grep -q greeting=green <<<"$seen" || fail "green never answered: $seen"

step "deregister-targets: the deregistered container gets no more requests"
aws elbv2 deregister-targets --target-group-arn "$tg" --targets "Id=$instance,Port=${ports[0]}"
for _ in $(seq 1 10); do
    body="$(curl -fsS "http://$dns/")"
    grep -q greeting=green <<<"$body" || fail "a deregistered target answered: $body"
done

step "kill -9 berth and start it again: the load balancer serves again"
berth_kill
berth_start --lb-address-pool "$pool"
body="$(curl -fsS --retry 20 --retry-delay 0 --retry-all-errors "http://$dns/")" || fail "the load balancer did not come back"
grep -q greeting=green <<<"$body" || fail "unexpected answer after restart: $body"

step "delete-load-balancer (its listener goes with it), delete-target-group"
aws elbv2 delete-load-balancer --load-balancer-arn "$lb"
aws elbv2 delete-target-group --target-group-arn "$tg"
[[ "$(aws elbv2 describe-load-balancers --query 'length(LoadBalancers)' --output text)" == 0 ]] || fail "load balancer not deleted"

echo "e2e elb: 1 passed, 0 failed"
