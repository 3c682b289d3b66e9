#!/usr/bin/env bash
# bench-kinesis.sh: drain a pre-filled 4-shard kinesalite stream with a no-op
# processor and print one table row: records/s, shardrun CPU per record, peak RSS.
#
#   scripts/bench-kinesis.sh            400k records of 100 bytes
#   BENCH_QUICK=1 scripts/bench-kinesis.sh   40k
#   BENCH_RECORDS=N, BENCH_SHARDS=N     override
#
# Starts the emulators (scripts/emulators.sh) if they are not running, and
# stops them again at the end in that case. Talks to 127.0.0.1 only, with
# dummy credentials; AWS_EC2_METADATA_DISABLED=true throughout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARDRUN="${SHARDRUN:-$ROOT/shardrun}"
RECORDS="${BENCH_RECORDS:-$([[ "${BENCH_QUICK:-}" == 1 ]] && echo 40000 || echo 400000)}"
SHARDS="${BENCH_SHARDS:-4}"
KPORT="${KINESALITE_PORT:-4567}"
DPORT="${DYNALITE_PORT:-4568}"

export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIDSHARDRUNBENCH AWS_SECRET_ACCESS_KEY=shardrun-bench-secret AWS_REGION=us-east-1

[[ -x "$SHARDRUN" ]] || { echo "bench-kinesis: $SHARDRUN not built (make)" >&2; exit 1; }
started=0
if ! "$ROOT/scripts/emulators.sh" status >/dev/null 2>&1; then
    "$ROOT/scripts/emulators.sh" start >&2
    started=1
fi
work="$(mktemp -d)"
cleanup() {
    rm -rf "$work"
    if ((started)); then "$ROOT/scripts/emulators.sh" stop >&2; fi
}
trap cleanup EXIT

id="bench$(date +%s)$$"
cat >"$work/shardrun.lua" <<LUA
application = "$id"
source = { type = "kinesis", region = "us-east-1", endpoint = "http://127.0.0.1:$KPORT" }
leases = { type = "dynamodb", region = "us-east-1", endpoint = "http://127.0.0.1:$DPORT" }
streams = { { name = "$id", processor = "noop.lua", idle_time_between_reads_ms = 200 } }
LUA
cat >"$work/noop.lua" <<'LUA'
local P = {}
function P.processRecords(records, shard) return "checkpoint" end
function P.shardEnded(shard) return "checkpoint" end
function P.shutdownRequested(shard) return "checkpoint" end
return P
LUA
cd "$work"
"$SHARDRUN" stream create "$id" --shards "$SHARDS" >create.log 2>&1 || { cat create.log >&2; exit 1; }
# 100-byte records (99 characters + the number's padding), spread by key over the shards
awk -v n="$RECORDS" 'BEGIN { pad = sprintf("%090d", 0); for (i = 0; i < n; i++) printf "%09d %s\n", i, pad }' \
    >records.txt
t0=$(date +%s.%N)
"$SHARDRUN" put "$id" records.txt 2>put.log || { cat put.log >&2; exit 1; }
t1=$(date +%s.%N)
/usr/bin/time -v -o time.txt "$SHARDRUN" run --drain >run.log 2>&1 || { tail -20 run.log >&2; exit 1; }

elapsed_ms=$(sed -n 's/.*event=worker_drained .*elapsed_ms=\([0-9]*\).*/\1/p' run.log | tail -1)
user=$(sed -n 's/.*User time (seconds): //p' time.txt)
sys=$(sed -n 's/.*System time (seconds): //p' time.txt)
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' time.txt)
awk -v n="$RECORDS" -v s="$SHARDS" -v ms="$elapsed_ms" -v u="$user" -v sy="$sys" -v rss="$rss_kb" \
    -v put="$(echo "$t1 - $t0" | bc)" 'BEGIN {
    printf "| kinesis drain (kinesalite) | %d x 100 B | %d shards | %.0f records/s | %.2f us CPU/record | %.1f MB peak RSS | prefill %.1f s |\n",
        n, s, n / (ms / 1000.0), (u + sy) * 1e6 / n, rss / 1024.0, put }'
