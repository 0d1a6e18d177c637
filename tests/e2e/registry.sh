#!/usr/bin/env bash
# The ECR walkthrough with the real `aws` and `docker` CLIs: create a repository with scan
# on push, `aws ecr get-login-password | docker login`, tag, push, remove, pull back; scan
# findings against the OSV test fixture (`berth vulndb import`); a
# push to a repository that does not exist is denied; without credentials nothing is
# served.
#
# Usage: tests/e2e/registry.sh [path/to/berth]   (default: target/debug/berth)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
berth="${1:-$root/target/debug/berth}"
data="$(mktemp -d)"
# shellcheck source=lib.sh
source "$here/lib.sh"
host=""
cleanup() {
    berth_kill
    if [[ -n "$host" ]]; then
        docker logout "$host" >/dev/null 2>&1 || true
        docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$host/" | xargs -r docker rmi >/dev/null 2>&1 || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT

image="$(cargo run -q -p testkit --bin test-image)"

step "berth up"
berth_start --no-agent
host="${AWS_ENDPOINT_URL#http://}"

step "aws ecr create-repository --image-scanning-configuration scanOnPush=true"
uri="$(aws ecr create-repository --repository-name ecr-simplehttp --image-scanning-configuration scanOnPush=true --query repository.repositoryUri --output text)"
[[ "$uri" == "$host/ecr-simplehttp" ]] || fail "unexpected repositoryUri $uri"

step "aws ecr get-login-password | docker login"
aws ecr get-login-password | docker login --username AWS --password-stdin "$host" >/dev/null || fail "docker login refused the token"

step "docker tag, push, rmi, pull"
docker tag "$image" "$uri:1.0"
docker tag "$image" "$uri:latest"
docker push -q "$uri:1.0" >/dev/null || fail "push of 1.0 failed"
docker push -q "$uri:latest" >/dev/null || fail "push of latest failed"
docker rmi "$uri:1.0" >/dev/null
docker pull -q "$uri:1.0" >/dev/null || fail "pull failed"

step "aws ecr describe-images / list-images"
tags="$(aws ecr describe-images --repository-name ecr-simplehttp --image-ids imageTag=1.0 --query 'imageDetails[0].imageTags' --output text | tr '\t' '\n' | sort | tr '\n' ' ')"
[[ "$tags" == "1.0 latest " ]] || fail "expected tags 1.0 and latest on one image, got '$tags'"
size="$(aws ecr describe-images --repository-name ecr-simplehttp --query 'imageDetails[0].imageSizeInBytes' --output text)"
[[ "$size" -gt 1000 ]] || fail "implausible image size $size"
[[ "$(aws ecr list-images --repository-name ecr-simplehttp --query 'length(imageIds)' --output text)" == 2 ]] || fail "list-images"
if out="$(aws ecr describe-images --repository-name ecr-simplehttp --image-ids imageTag=nope 2>&1)"; then fail "a missing tag was found"; fi
grep -q ImageNotFoundException <<<"$out" || fail "expected ImageNotFoundException: $out"

step "scan on push: berth vulndb import, aws ecr wait image-scan-complete, describe-image-scan-findings"
"$berth" vulndb import "$root/crates/berth/tests/fixtures/osv" --data-dir "$data" >/dev/null || fail "vulndb import"
# The scan starts just after the push returns; poll until it is there and done. The
# image-scan-complete waiter accepts only COMPLETE (FAILED fails it), so the FROM scratch
# simplehttp image, which is UNSUPPORTED_IMAGE, is polled instead of waited for.
scan_status() {
    local s=""
    for _ in $(seq 1 150); do
        s="$(aws ecr describe-image-scan-findings --repository-name ecr-simplehttp --image-id "imageTag=$1" --query imageScanStatus.status --output text 2>/dev/null || true)"
        [[ -n "$s" && "$s" != IN_PROGRESS ]] && break
        sleep 0.2
    done
    echo "$s"
}
[[ "$(scan_status 1.0)" == UNSUPPORTED_IMAGE ]] || fail "simplehttp (FROM scratch) should be UNSUPPORTED_IMAGE"
rootfs="$data/rootfs"
mkdir -p "$rootfs/etc" "$rootfs/var/lib/dpkg"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n' >"$rootfs/etc/os-release"
printf 'Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n' >"$rootfs/var/lib/dpkg/status"
tar -C "$rootfs" -c . | docker import - "$uri:debian" >/dev/null
docker push -q "$uri:debian" >/dev/null || fail "push of the Debian root fs failed"
scan_status debian >/dev/null
aws ecr wait image-scan-complete --repository-name ecr-simplehttp --image-id imageTag=debian || fail "image-scan-complete"
finding="$(aws ecr describe-image-scan-findings --repository-name ecr-simplehttp --image-id imageTag=debian --query 'imageScanFindings.findings[0].[name,severity,attributes[?key==`package_version`].value|[0]]' --output text)"
[[ "$finding" == $'CVE-2024-99101\tCRITICAL\t3.0.11-1~deb12u2' ]] || fail "unexpected finding '$finding'"

step "a repository that does not exist is denied"
docker tag "$image" "$host/nope:1"
if out="$(docker push "$host/nope:1" 2>&1)"; then fail "push to a missing repository succeeded"; fi
grep -q "does not exist" <<<"$out" || fail "unexpected error: $out"

step "without credentials nothing is served"
docker logout "$host" >/dev/null
docker rmi "$uri:1.0" >/dev/null
if docker pull -q "$uri:1.0" >/dev/null 2>&1; then fail "an anonymous pull succeeded"; fi

step "delete-repository refuses a repository with images unless --force"
if out="$(aws ecr delete-repository --repository-name ecr-simplehttp 2>&1)"; then fail "deleted a repository with images"; fi
grep -q RepositoryNotEmptyException <<<"$out" || fail "expected RepositoryNotEmptyException: $out"
aws ecr delete-repository --repository-name ecr-simplehttp --force >/dev/null

echo "e2e registry: 1 passed, 0 failed"
