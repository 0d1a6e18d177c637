# Shared by the end-to-end walkthroughs: source it after setting `berth` and `data`.
# `berth_start [ARGS...]` starts `berth up` on a free loopback port with the data dir
# `$data` (extra ARGS such as --no-agent), waits until it serves, and points the aws CLI at
# it; `berth_kill` kills it with SIGKILL. The server's pid is in `$pid`.

pid=""

fail() { echo "FAIL: $*" >&2; [[ -f "$data/server.log" ]] && tail -20 "$data/server.log" >&2; exit 1; }
step() { echo "--- $*"; }

berth_start() {
    rm -f "$data/endpoint"
    "$berth" up --data-dir "$data" --listen 127.0.0.1:0 "$@" >>"$data/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        if [[ -s "$data/endpoint" ]] && curl -fsS "$(cat "$data/endpoint")/_berth/health" >/dev/null 2>&1; then
            eval "$("$berth" env --data-dir "$data")"
            export AWS_MAX_ATTEMPTS=1
            return
        fi
        kill -0 "$pid" 2>/dev/null || fail "berth exited during start"
        sleep 0.1
    done
    fail "berth did not become healthy"
}

berth_kill() {
    if [[ -n "$pid" ]]; then
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
