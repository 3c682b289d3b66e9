#!/usr/bin/env bash
# demo.sh: the word-count demo. `make demo` installs the dependencies, builds
# ./shardrun and runs this; it exits by itself.
#
#   1. resets examples/wordcount/data/ (the local stream, leases and counts)
#   2. creates the stream `words` with DEMO_SHARDS shards (default 4)
#   3. puts DEMO_LINES lines (default 5000) of generated text, one record each;
#      the text is the same on every run (a fixed-seed generator)
#   4. runs `shardrun run -c examples/wordcount/shardrun.lua --drain`, which
#      exits once every shard is caught up (examples/wordcount/wordcount.lua
#      writes per-shard counts into data/)
#   5. prints a summary, and checks that the words counted equal the words put
#
# SHARDRUN names the binary (default ./shardrun); DEMO_TIMEOUT (seconds,
# default 300) bounds the worker run. Afterwards, look around with
#   ./shardrun status -c examples/wordcount/shardrun.lua
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export AWS_EC2_METADATA_DISABLED=true
export SHARDRUN_LUA_DIR="${SHARDRUN_LUA_DIR:-$ROOT/lua}"

SHARDRUN="${SHARDRUN:-$ROOT/shardrun}"
CFG=examples/wordcount/shardrun.lua
DATA=examples/wordcount/data
LINES="${DEMO_LINES:-5000}"
SHARDS="${DEMO_SHARDS:-4}"
TIMEOUT="${DEMO_TIMEOUT:-300}"

die() { echo "demo: error: $*" >&2; exit 1; }
[[ -x "$SHARDRUN" ]] || die "$SHARDRUN not found: run \`make\` first (or \`make demo\`)"

rm -rf "$DATA"
mkdir -p "$DATA"

# Deterministic text: a Park-Miller generator (exact in awk's doubles) picks
# words from a fixed list, skewed towards the front so the top 10 is clear.
gen_text() {
    awk -v lines="$1" 'BEGIN {
        n = split("the of and to in a is that for it as was with be by on not he this are " \
                  "or his from at which but have an they you were her she there would their " \
                  "we him been has when who will more no if out so said what up its about " \
                  "into than them can only other new some could time these two may then do " \
                  "first any my now such like our over man me even most made after also did " \
                  "many before must through back years where much your way well down should " \
                  "because each just those people how too little state good very make world " \
                  "still own see men work long get here between both life being under never " \
                  "stream shard lease record checkpoint batch worker lua", w, " ")
        x = 20240601
        for (l = 0; l < lines; l++) {
            x = (x * 16807) % 2147483647; len = 4 + int(9 * x / 2147483647)
            line = ""
            for (i = 0; i < len; i++) {
                x = (x * 16807) % 2147483647; u = x / 2147483647
                line = line (i ? " " : "") w[1 + int(n * u * u)]
            }
            print line
        }
    }'
}

echo "demo: creating stream words ($SHARDS shards) in $DATA"
quiet() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; die "failed: $*"; }; }
quiet "$SHARDRUN" stream -c "$CFG" create words --shards "$SHARDS"
gen_text "$LINES" >"$DATA/input.txt"
words_put=$(awk '{ n += NF } END { print n + 0 }' "$DATA/input.txt")
quiet "$SHARDRUN" put -c "$CFG" words "$DATA/input.txt"
echo "demo: put $LINES records ($words_put words); running the worker until drained"

start=$(date +%s%N)
rc=0
timeout -k 10 "$TIMEOUT" "$SHARDRUN" run -c "$CFG" --drain >"$DATA/worker.log" 2>&1 || rc=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
if [[ $rc -ne 0 ]]; then
    tail -20 "$DATA/worker.log" >&2
    [[ $rc -eq 124 ]] && die "the worker did not drain within ${TIMEOUT}s (log: $DATA/worker.log)"
    die "the worker exited with status $rc (log: $DATA/worker.log)"
fi

shopt -s nullglob
counts=("$DATA"/words.*.counts)
[[ ${#counts[@]} -gt 0 ]] || die "no counts files in $DATA: did the processor run? (log: $DATA/worker.log)"

# Header of each counts file: # stream=... shard=... records=N words=N last=...
summary=$(awk '
    FNR == 1 {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); h[kv[1]] = kv[2] }
        printf "    %-24s %6d records %7d words\n", h["shard"], h["records"], h["words"]
        records += h["records"]; words += h["words"]; shards++
        next
    }
    END { printf "TOTAL %d %d %d\n", records, words, shards }' "${counts[@]}")
read -r _ records_done words_done shards_done < <(grep '^TOTAL' <<<"$summary")

echo
echo "shardrun demo: word count over a local stream"
printf '  records   %d processed of %d put, in %d.%03d s (worker exit 0, --drain)\n' \
    "$records_done" "$LINES" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
printf '  words     %d counted of %d put\n' "$words_done" "$words_put"
echo "  shards    $shards_done"
grep -v '^TOTAL' <<<"$summary"
echo "  top 10 words"
awk -F '\t' 'FNR > 1 { c[$1] += $2 } END { for (w in c) print c[w], w }' "${counts[@]}" |
    sort -k1,1nr -k2,2 | head -10 | awk '{ printf "    %-12s %6d\n", $2, $1 }'
echo "  files     $DATA (counts per shard, worker.log); ./shardrun status -c $CFG"

[[ "$records_done" -eq "$LINES" && "$words_done" -eq "$words_put" ]] ||
    die "counted $records_done records / $words_done words, expected $LINES / $words_put"
