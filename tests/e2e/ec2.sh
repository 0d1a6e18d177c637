#!/usr/bin/env bash
# EC2 with the real `aws` CLI, as ECS workflows and IaC tools call it: the default VPC and
# its DNS attributes; create-vpc, create-subnet and tags; a Fargate task in the created
# subnet, found by its address with describe-network-interfaces (how users find a Fargate
# task's IP); the local agent's instance in describe-instances; the subnet cannot go while
# the task's interface is in it, and can once the task stopped; delete-vpc.
#
# Usage: tests/e2e/ec2.sh [path/to/berth]   (default: target/debug/berth)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
berth="${1:-$root/target/debug/berth}"
data="$(mktemp -d)"
# A block of this script's own, so that its subnets' Docker networks clash with no other.
block="10.232.4.0/22"
# shellcheck source=lib.sh
source "$here/lib.sh"
cleanup() {
    berth_kill
    if [[ -n "${cluster_arn:-}" ]]; then
        docker ps -aq --filter "label=com.amazonaws.ecs.cluster=$cluster_arn" | xargs -r docker rm -f >/dev/null
    fi
    # The subnets' networks (label berth.managed) inside this script's block.
    for n in $(docker network ls -q --filter label=berth.managed=true); do
        docker network inspect "$n" --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}' | grep -q '^10\.232\.[4-7]\.' \
            && docker network rm "$n" >/dev/null 2>&1 || true
    done
    rm -rf "$data"
}
trap cleanup EXIT

step "build the test image"
image="$(cargo run -q -p testkit --bin test-image)"

step "berth up (with its local agents) in VPC block $block"
berth_start --vpc-cidr "$block"

step "describe-vpcs, describe-vpc-attribute (what ec2_vpc_net_info reads)"
vpc="$(aws ec2 describe-vpcs --filters Name=is-default,Values=true --query 'Vpcs[0].VpcId' --output text)"
[[ "$vpc" == vpc-* ]] || fail "no default VPC: $vpc"
[[ "$(aws ec2 describe-vpc-attribute --vpc-id "$vpc" --attribute enableDnsSupport --query EnableDnsSupport.Value --output text)" == True ]] \
    || fail "DNS support is not on"
[[ "$(aws ec2 describe-vpc-attribute --vpc-id "$vpc" --attribute enableDnsHostnames --query EnableDnsHostnames.Value --output text)" == True ]] \
    || fail "DNS hostnames are not on"
[[ "$(aws ec2 describe-account-attributes --attribute-names default-vpc --query 'AccountAttributes[0].AttributeValues[0].AttributeValue' --output text)" == "$vpc" ]] \
    || fail "default-vpc is not the default VPC"

step "create-vpc, create-subnet, create-tags, describe-tags"
app="$(aws ec2 create-vpc --cidr-block "$block" --query Vpc.VpcId --output text)"
aws ec2 create-subnet --vpc-id "$app" --cidr-block 10.232.4.0/33 2>"$data/err" && fail "a /33 was accepted"
subnet="$(aws ec2 create-subnet --vpc-id "$app" --cidr-block 10.232.7.192/26 --availability-zone us-east-1a --query Subnet.SubnetId --output text)"
aws ec2 create-subnet --vpc-id "$app" --cidr-block 10.232.7.0/24 2>"$data/err" && fail "an overlapping subnet was accepted"
grep -q InvalidSubnet.Conflict "$data/err" || fail "an overlap was not InvalidSubnet.Conflict"
aws ec2 create-tags --resources "$app" "$subnet" --tags Key=Name,Value=app
[[ "$(aws ec2 describe-tags --filters Name=key,Values=Name --query 'length(Tags)' --output text)" == 2 ]] \
    || fail "describe-tags does not list both tags"
[[ "$(aws ec2 describe-subnets --filters Name=tag:Name,Values=app --query 'Subnets[0].SubnetId' --output text)" == "$subnet" ]] \
    || fail "the tag:Name filter does not find the subnet"

step "a Fargate task in the created subnet"
cluster_arn="$(aws ecs create-cluster --cluster-name default --query cluster.clusterArn --output text)"
aws ecs register-task-definition --family web --requires-compatibilities FARGATE --network-mode awsvpc \
    --cpu 256 --memory 512 --container-definitions \
    "[{\"name\":\"web\",\"image\":\"$image\",\"command\":[\"serve\",\"--port\",\"8080\"],\"portMappings\":[{\"containerPort\":8080}]}]" >/dev/null
task=""
for _ in $(seq 1 100); do
    task="$(aws ecs run-task --launch-type FARGATE --task-definition web \
        --network-configuration "awsvpcConfiguration={subnets=[$subnet]}" --query 'tasks[0].taskArn' --output text)"
    [[ "$task" == arn:* ]] && break
    sleep 0.2
done
[[ "$task" == arn:* ]] || fail "the Fargate task was not placed"
aws ecs wait tasks-running --tasks "$task"
ip="$(aws ecs describe-tasks --tasks "$task" --query "tasks[0].attachments[0].details[?name=='privateIPv4Address'].value | [0]" --output text)"
eni="$(aws ecs describe-tasks --tasks "$task" --query "tasks[0].attachments[0].details[?name=='networkInterfaceId'].value | [0]" --output text)"
for _ in $(seq 1 100); do curl -fsS "http://$ip:8080/" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://$ip:8080/" | grep -q hello || fail "the task does not answer at $ip"

step "describe-network-interfaces --filters Name=addresses.private-ip-address,Values=$ip"
found="$(aws ec2 describe-network-interfaces --filters "Name=addresses.private-ip-address,Values=$ip" \
    --query 'NetworkInterfaces[0].[NetworkInterfaceId,SubnetId,VpcId,Status]' --output text)"
[[ "$(echo $found)" == "$eni $subnet $app in-use" ]] || fail "unexpected interface: $found"
desc="$(aws ec2 describe-network-interfaces --network-interface-ids "$eni" --query 'NetworkInterfaces[0].Description' --output text)"
[[ "$desc" == arn:aws:ecs:us-east-1:*:attachment/* ]] || fail "unexpected description $desc"

step "describe-instances lists the local agent's instance"
instance="$(aws ecs describe-container-instances --container-instances "$(aws ecs list-container-instances --query 'containerInstanceArns[0]' --output text)" \
    --query 'containerInstances[0].ec2InstanceId' --output text)"
[[ "$(aws ec2 describe-instances --filters "Name=instance-id,Values=$instance" --query 'Reservations[0].Instances[0].State.Name' --output text)" == running ]] \
    || fail "the instance $instance is not running in describe-instances"

step "delete-subnet waits for the task; delete-vpc"
aws ec2 delete-subnet --subnet-id "$subnet" 2>"$data/err" && fail "a subnet in use was deleted"
grep -q DependencyViolation "$data/err" || fail "a subnet in use was not a DependencyViolation"
aws ecs stop-task --task "$task" >/dev/null
aws ecs wait tasks-stopped --tasks "$task"
[[ "$(aws ec2 describe-network-interfaces --query 'length(NetworkInterfaces)' --output text)" == 0 ]] \
    || fail "the stopped task's interface is still described"
aws ec2 delete-subnet --subnet-id "$subnet"
aws ec2 delete-vpc --vpc-id "$app"

echo "e2e ec2: 1 passed, 0 failed"
