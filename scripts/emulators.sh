#!/usr/bin/env bash
# emulators.sh: kinesalite (Kinesis) and dynalite (DynamoDB), local stand-ins
# for AWS used by the integration tests and the Kinesis benchmarks.
#
#   scripts/emulators.sh install   npm packages into .deps/node (no-op when present)
#   scripts/emulators.sh start     start both (idempotent), wait until they answer
#   scripts/emulators.sh stop      stop both, by the PIDs this script saved
#   scripts/emulators.sh status    say what runs where; exit 1 if either is down
#
# Both listen on 127.0.0.1 only (kinesalite's own CLI binds every interface,
# so they are started from a few lines of Node instead), keep everything in
# memory (a restart is a clean slate), and take their ports from
# KINESALITE_PORT (default 4567) and DYNALITE_PORT (default 4568).
# PIDs and logs: .deps/run/{kinesalite,dynalite}.{pid,log}.
#
# Known kinesalite quirks the runtime must tolerate (or tests must avoid):
#   - GetRecords never returns ChildShards, even at the end of a closed shard:
#     shard sync has to find children through ListShards (ParentShardId).
#   - GetShardIterator AT_TIMESTAMP on an empty shard may never answer;
#     requests need a timeout, and tests should not depend on that case.
#   - Base64 is strict: Data must be canonical, padded base64, or the call
#     fails with a SerializationException.
#   - Stream create/delete/update delays are simulated; they are set small here
#     (STREAM_DELAY_MS, default 10 ms) so tests need not wait.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_PREFIX="$ROOT/.deps/node"
RUN_DIR="$ROOT/.deps/run"
KINESALITE_PORT="${KINESALITE_PORT:-4567}"
DYNALITE_PORT="${DYNALITE_PORT:-4568}"
STREAM_DELAY_MS="${STREAM_DELAY_MS:-10}"
START_TIMEOUT_S="${START_TIMEOUT_S:-20}"

# Pinned versions known to run on Node 20 (dynalite 4 requires Node >= 20).
KINESALITE_VERSION="3.3.3"
DYNALITE_VERSION="4.0.0"

die() { echo "emulators: error: $*" >&2; exit 1; }
say() { echo "emulators: $*"; }

installed_version() { # name -> version in .deps/node, or empty
    local pj="$NODE_PREFIX/node_modules/$1/package.json"
    [[ -f "$pj" ]] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null || true
}

cmd_install() {
    command -v node >/dev/null || die "node is not installed (apt-get install nodejs npm)"
    command -v npm >/dev/null || die "npm is not installed (apt-get install npm)"
    if [[ "$(installed_version kinesalite)" == "$KINESALITE_VERSION" &&
          "$(installed_version dynalite)" == "$DYNALITE_VERSION" ]]; then
        say "kinesalite $KINESALITE_VERSION and dynalite $DYNALITE_VERSION already installed in $NODE_PREFIX"
        return 0
    fi
    mkdir -p "$NODE_PREFIX"
    say "npm install kinesalite@$KINESALITE_VERSION dynalite@$DYNALITE_VERSION into $NODE_PREFIX"
    # Native LevelDB bindings are optional: in-memory stores need none of them.
    npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --omit=optional \
        "kinesalite@$KINESALITE_VERSION" "dynalite@$DYNALITE_VERSION" ||
        die "npm install failed (see the output above)"
    [[ "$(installed_version kinesalite)" == "$KINESALITE_VERSION" ]] || die "kinesalite not installed"
    [[ "$(installed_version dynalite)" == "$DYNALITE_VERSION" ]] || die "dynalite not installed"
}

pid_of() { # name -> pid from the pid file if that process is alive
    local f="$RUN_DIR/$1.pid" pid
    [[ -f "$f" ]] || return 1
    pid="$(cat "$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# A request shaped like an SDK's: the emulators check that an Authorization
# header is present and well-formed, not the signature itself.
probe() { # name port
    local target ctype svc
    case "$1" in
    kinesalite) target="Kinesis_20131202.ListStreams" ctype="application/x-amz-json-1.1" svc=kinesis ;;
    dynalite) target="DynamoDB_20120810.ListTables" ctype="application/x-amz-json-1.0" svc=dynamodb ;;
    esac
    curl -sf --noproxy '*' -m 2 -X POST "http://127.0.0.1:$2/" \
        -H "Content-Type: $ctype" -H "X-Amz-Target: $target" \
        -H "X-Amz-Date: 20240101T000000Z" \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/$svc/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000" \
        -d '{}' 2>/dev/null
}

# Node program for one emulator: module name, port, options as JSON.
node_main() {
    cat <<'EOF'
const [mod, port, opts] = process.argv.slice(1);
const server = require(mod)(JSON.parse(opts));
server.on('error', (e) => { console.error(`${mod}: ${e.message}`); process.exit(1); });
server.listen(Number(port), '127.0.0.1', () => console.log(`${mod} listening on 127.0.0.1:${port}`));
const bye = () => server.close(() => process.exit(0));
process.on('SIGTERM', bye);
process.on('SIGINT', bye);
EOF
}

start_one() { # name port options-json
    local name="$1" port="$2" opts="$3" pid out
    if pid="$(pid_of "$name")"; then
        probe "$name" "$port" >/dev/null || die "$name (pid $pid) runs but does not answer on 127.0.0.1:$port; see $RUN_DIR/$name.log"
        say "$name already running (pid $pid, 127.0.0.1:$port)"
        return 0
    fi
    if probe "$name" "$port" >/dev/null; then
        die "something not started by this script already answers on 127.0.0.1:$port; stop it or set ${name^^}_PORT"
    fi
    [[ -d "$NODE_PREFIX/node_modules/$name" ]] || die "$name is not installed; run: scripts/emulators.sh install"
    mkdir -p "$RUN_DIR"
    # setsid: the emulator must not die with the shell (or CI step) that started it.
    NODE_PATH="$NODE_PREFIX/node_modules" setsid node -e "$(node_main)" "$name" "$port" "$opts" \
        >"$RUN_DIR/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$RUN_DIR/$name.pid"
    local waited=0
    until out="$(probe "$name" "$port")"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$RUN_DIR/$name.pid"
            tail -n 20 "$RUN_DIR/$name.log" >&2 || true
            die "$name exited during start; log: $RUN_DIR/$name.log"
        fi
        if ((waited >= START_TIMEOUT_S * 10)); then
            tail -n 20 "$RUN_DIR/$name.log" >&2 || true
            die "$name (pid $pid) did not answer on 127.0.0.1:$port within ${START_TIMEOUT_S}s"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    say "$name started (pid $pid, 127.0.0.1:$port): $out"
}

cmd_start() {
    command -v curl >/dev/null || die "curl is needed to check the emulators"
    cmd_install >/dev/null
    local d="$STREAM_DELAY_MS"
    start_one kinesalite "$KINESALITE_PORT" \
        "{\"createStreamMs\":$d,\"deleteStreamMs\":$d,\"updateStreamMs\":$d,\"shardLimit\":1000}"
    start_one dynalite "$DYNALITE_PORT" \
        "{\"createTableMs\":$d,\"deleteTableMs\":$d,\"updateTableMs\":$d}"
}

stop_one() { # name
    local name="$1" pid i
    if ! pid="$(pid_of "$name")"; then
        rm -f "$RUN_DIR/$name.pid"
        say "$name not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) ignored SIGTERM for 5s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/$name.pid"
    say "$name stopped (pid $pid)"
}

cmd_stop() {
    stop_one kinesalite
    stop_one dynalite
}

cmd_status() {
    local rc=0 name port pid
    for name in kinesalite dynalite; do
        [[ "$name" == kinesalite ]] && port="$KINESALITE_PORT" || port="$DYNALITE_PORT"
        if pid="$(pid_of "$name")" && probe "$name" "$port" >/dev/null; then
            say "$name running (pid $pid, http://127.0.0.1:$port)"
        elif pid="$(pid_of "$name")"; then
            say "$name pid $pid alive but not answering on 127.0.0.1:$port"
            rc=1
        else
            say "$name not running"
            rc=1
        fi
    done
    return "$rc"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
