#!/usr/bin/env bash
# Installs what the tests and benchmarks need beyond a fresh machine: the aws CLI and
# moto_server (PyPI), wrk, skopeo, iproute2 (the test bed's network namespaces), faketime
# (a replica with a skewed clock) and PostgreSQL (Debian; tests start their own throwaway
# clusters with its binaries, never the packaged service), and s3s-fs
# (crates.io; an S3-compatible server over a directory, which the tests of registry blobs
# on S3 start on their own ports). Idempotent: installs only what is missing.
# Runs as root with no standard input.
set -euo pipefail

PYTHON=${PYTHON:-python3}

# PyPI packages, each with a Python import that proves it is usable.
py_missing=()
"$PYTHON" -c 'import awscli' 2>/dev/null || py_missing+=(awscli)
"$PYTHON" -c 'import moto.server, flask, flask_cors' 2>/dev/null || py_missing+=('moto[server]')
if ((${#py_missing[@]})); then
    echo "install-test-deps: pip install ${py_missing[*]}"
    "$PYTHON" -m pip install --quiet "${py_missing[@]}"
    # pyenv puts console scripts behind shims that exist only after a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi

# Debian packages, each with a command that proves it is installed.
deb_missing=()
command -v wrk >/dev/null 2>&1 || deb_missing+=(wrk)
command -v skopeo >/dev/null 2>&1 || deb_missing+=(skopeo)
command -v iptables-restore >/dev/null 2>&1 || deb_missing+=(iptables)
command -v ip >/dev/null 2>&1 || deb_missing+=(iproute2)
command -v faketime >/dev/null 2>&1 || deb_missing+=(faketime)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || deb_missing+=(postgresql)
if ((${#deb_missing[@]})); then
    echo "install-test-deps: apt-get install ${deb_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${deb_missing[@]}" </dev/null
fi

# s3s-fs from crates.io, built here. Pinned: later versions need a newer Rust than the
# toolchain's. Its own lock file, so that its dependencies are the ones it was tested with.
S3S_FS_VERSION=0.14.1
if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "install-test-deps: cargo install s3s-fs $S3S_FS_VERSION"
    cargo install --locked --quiet --version "$S3S_FS_VERSION" --features binary s3s-fs </dev/null
fi

for cmd in aws moto_server wrk skopeo iptables-restore ip faketime nsenter setpriv s3s-fs; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "install-test-deps: $cmd is still missing" >&2; exit 1; }
done
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || { echo "install-test-deps: PostgreSQL is still missing" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "install-test-deps: the postgres user is missing" >&2; exit 1; }
